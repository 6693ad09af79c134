"""One answer being generated for one HTTP request, and the watch on its client.

The generation runs in a thread of its own (`Answer`) that alone drives the session's stream,
so the event loop never closes a generator another thread is running; the loop reads the pieces
from a queue. `Client` notices a disconnect as soon as the server does; the request then sets
the answer's cancel event (generation stops at the next token) and frees its gate slot without
waiting for the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from skyeye.chat.readable import readable_stream
from skyeye.chat.session import ChatSession
from skyeye.errors import GenerationCancelled, ServeRequestError

T = TypeVar("T")

#: The last item of an answer's pieces.
END = object()


class Answer:
    """``session.stream(question)`` in a daemon thread; `next` gives its pieces, then `END`.

    Set `cancel` to stop it: the thread ends at the next token and drops the question.
    """

    def __init__(self, session: ChatSession, question: str) -> None:
        self.cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._thread = threading.Thread(
            target=self._run, args=(session, question), name="skyeye-answer", daemon=True
        )
        self._thread.start()

    def _run(self, session: ChatSession, question: str) -> None:
        try:
            # Sentences, not the model's grammar (that is the extension's `raw`).
            for piece in readable_stream(session, question, self.cancel):
                self._put(piece)
            self._put(END)
        except BaseException as err:  # handed to the reader, which turns it into a response
            self._put(err)

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed (server shut down): nobody reads
            pass

    async def next(self) -> str | object:
        """The next piece of text, or `END`; a generation error as a 4xx `ServeRequestError`."""
        item = await self._queue.get()
        if isinstance(item, GenerationCancelled):
            raise item
        if isinstance(item, ValueError):  # PromptTooLongError and friends: the request's fault
            code = "context_length_exceeded" if "context" in str(item) else None
            raise ServeRequestError(str(item), code=code, param="messages") from None
        if isinstance(item, BaseException):
            raise item
        return item


class Client:
    """The client of one request: `unless_gone` runs an awaitable unless the client disconnects
    first (then `GenerationCancelled`). Use after the body has been read."""

    def __init__(self, request: Request) -> None:
        self._gone = asyncio.ensure_future(_disconnected(request.receive))

    async def unless_gone(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.ensure_future(awaitable)
        try:
            await asyncio.wait({task, self._gone}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # this request itself was cancelled
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        raise GenerationCancelled("the client disconnected")

    def close(self) -> None:
        self._gone.cancel()


async def _disconnected(receive: Receive) -> None:
    # Once the body is read, the server's next message for this request is the disconnect
    # (uvicorn sends it when the socket closes, or when the response is complete).
    while (await receive())["type"] != "http.disconnect":
        pass


class ClosingStream(StreamingResponse):
    """A streamed response that calls `on_close` however it ends: finished, failed, or cancelled
    by the server when the client disconnected (the body generator may never get to its own
    cleanup then). `on_close` must not await: it runs inside a cancelled scope."""

    def __init__(self, content: Any, on_close: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream")
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()
