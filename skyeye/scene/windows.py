"""The window layout of a scene, its batches, and the blending weight of each window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SceneWindow:
    """Window `index` of the layout: top-left (row, col) and size on the scene's grid."""

    index: int
    row: int
    col: int
    height: int
    width: int


def _starts(length: int, size: int, stride: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    # The last window ends at the edge (it overlaps its neighbour more) so all windows are full.
    return starts + [length - size]


def window_layout(height: int, width: int, window: int, overlap: int) -> list[SceneWindow]:
    """Windows of `window`² px overlapping by `overlap` px, row by row, covering the grid."""
    if overlap < 0 or overlap >= window:
        raise ValueError(f"overlap must be in [0, window), got {overlap} for window {window}")
    wh, ww = min(window, height), min(window, width)
    stride = window - overlap
    rows, cols = _starts(height, wh, stride), _starts(width, ww, stride)
    return [
        SceneWindow(i * len(cols) + j, r, c, wh, ww)
        for i, r in enumerate(rows)
        for j, c in enumerate(cols)
    ]


def blend_weight(height: int, width: int, overlap: int) -> np.ndarray:
    """(height, width) float32 weight: 1 inside, a linear ramp over the `overlap` px at each edge
    (never 0), so overlapping windows fade into each other instead of meeting at a seam."""

    def ramp(n: int) -> np.ndarray:
        if overlap <= 0:
            return np.ones(n, np.float32)
        i = np.arange(n, dtype=np.float32)
        return np.minimum(1.0, np.minimum(i + 0.5, n - i - 0.5) / overlap).astype(np.float32)

    return np.outer(ramp(height), ramp(width))


def pending_batches(
    windows: list[SceneWindow], batch: int, done: Callable[[int], bool]
) -> list[list[SceneWindow]]:
    """The layout's windows in fixed batches of `batch`, less the windows `done(index)` says are
    finished (empty batches dropped). Batches of the layout, not of the windows left: a resumed
    run batches each window with the same neighbours as an uninterrupted one."""
    batches = [windows[i : i + batch] for i in range(0, len(windows), batch)]
    left = [[w for w in b if not done(w.index)] for b in batches]
    return [b for b in left if b]
