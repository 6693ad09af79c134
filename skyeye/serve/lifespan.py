"""Work tied to the app's life: started when it starts, stopped when it shuts down."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool


def run_with_app(
    app: FastAPI, stop: Callable[[], Any], start: Callable[[], Any] | None = None
) -> None:
    """Wrap ``app``'s lifespan: ``start()`` before it serves, ``stop()`` after it shuts down
    (both in a worker thread; ``stop`` also when the app's own lifespan fails)."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        if start is not None:
            await run_in_threadpool(start)
        try:
            async with inner(a) as value:
                yield value
        finally:
            await run_in_threadpool(stop)

    app.router.lifespan_context = lifespan
