"""Concurrency limit with a bounded queue: `concurrency` answers at once, `queue_size` waiting,
429 beyond (the OpenAI client backs off and retries 429 by itself)."""

from __future__ import annotations

import asyncio

from skyeye.errors import ServeRequestError


class Slot:
    """A place taken in the gate; `release` gives it back (once: later calls do nothing, so every
    way out of a request (answered, failed, client gone) may call it)."""

    def __init__(self, gate: Gate) -> None:
        self._gate: Gate | None = gate

    @property
    def held(self) -> bool:
        return self._gate is not None

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._leave()


class Gate:
    """Admission control for the event loop (not thread-safe: use from async code only)."""

    def __init__(self, concurrency: int, queue_size: int) -> None:
        self.concurrency, self.queue_size = concurrency, queue_size
        self.inside = 0  # running + waiting
        self._slots: asyncio.Semaphore | None = None

    async def enter(self) -> Slot:
        """Wait for a slot; raise a 429 `ServeRequestError` when the queue is full."""
        if self.inside >= self.concurrency + self.queue_size:
            raise ServeRequestError(
                f"the server is busy ({self.concurrency} running, {self.queue_size} waiting): "
                "retry shortly",
                status=429,
                kind="rate_limit_error",
                code="server_busy",
            )
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        self.inside += 1
        try:
            await self._slots.acquire()
        except BaseException:  # cancelled while waiting (the client went away)
            self.inside -= 1
            raise
        return Slot(self)

    def _leave(self) -> None:
        assert self._slots is not None
        self._slots.release()
        self.inside -= 1
