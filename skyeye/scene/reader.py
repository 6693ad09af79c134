"""The scene's windows read one batch ahead: the next batch's pixels are read in a thread while
the model runs on this one.

The caller says when the next read may start (`PrefetchReader.read_ahead`, after it dropped
this batch's raw pixels), so two batches' raw windows never sit in memory at once; a caller that
does not say so gets the next batch read when it asks for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from skyeye.scene.windows import SceneWindow

#: Reads one window: (C, h, w) float32, NaN = nodata (`SceneSource.read` of the window).
ReadWindow = Callable[[SceneWindow], np.ndarray]


class PrefetchReader:
    """Iterate ``(batch, pixels)`` over `batches` (lists of windows), pixels a list of each
    window's (C, h, w) array, with at most the next batch being read in one worker thread.

    ``wait_s``: seconds the caller waited for pixels (reads that overlapped the model are free).
    Use as a context manager: leaving it waits for a read in flight and stops the thread.
    """

    def __init__(self, read: ReadWindow, batches: Sequence[list[SceneWindow]]) -> None:
        self.read = read
        self.batches = list(batches)
        self.wait_s = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._next = 0  # index of the batch the next read is of

    def __enter__(self) -> PrefetchReader:
        self._pool = ThreadPoolExecutor(max_workers=1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool, self._pending = None, None

    def _read_batch(self, batch: list[SceneWindow]) -> list[np.ndarray]:
        return [self.read(w) for w in batch]

    def read_ahead(self) -> None:
        """Start reading the next batch (nothing when it is read already or there is none)."""
        if self._pending is None and self._next < len(self.batches):
            assert self._pool is not None, "use PrefetchReader as a context manager"
            self._pending = self._pool.submit(self._read_batch, self.batches[self._next])
            self._next += 1

    def _take(self) -> list[np.ndarray]:
        self.read_ahead()
        started = time.perf_counter()
        future, self._pending = self._pending, None  # no reference kept: the caller frees it
        assert future is not None
        data = future.result()
        self.wait_s += time.perf_counter() - started
        return data

    def __iter__(self) -> Iterator[tuple[list[SceneWindow], list[np.ndarray]]]:
        for batch in self.batches:
            yield batch, self._take()
