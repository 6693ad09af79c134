"""The context pass of a two-date scene: windows that a change mostly fills, seen again wider.

The change decoder learned change as a part of a tile. On a 512-px window that one change fills
it finds less of it: recall ~0.96 where a quarter of the window changed, ~0.75 where 75-95 % did
(bench/RESULTS.md). A large lake or flood therefore came out with holes where it fills whole
windows. Seen with its surroundings at half the resolution, the same change is again a part of
the view: each window whose change mask covers at least ``min_share`` of its valid pixels is
read again over a region ``factor`` times its size centred on it (clamped to the scene),
averaged down ``factor`` times to the window's size, and its change probability there,
brought back to the window's grid, is merged with the window's own by their maximum (the
union of the two masks). On the bench tile's painted lake the window on dark forest went
from recall 0.79 to 0.96 (nothing drawn outside); windows with little change are not read
again, so the pass costs a forward pass per mostly-changed window only.

The store keeps the window's own probability as ``prob_window`` beside the merged ``prob``,
and marks the window's record ``context``: a resumed run skips those, and a window killed
between its two files is computed again the same way.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from tqdm.auto import tqdm

from skyeye.scene.windows import SceneWindow

if TYPE_CHECKING:  # imports torch
    from skyeye.scene.change_pipeline import PairRunner

logger = logging.getLogger(__name__)

#: How much wider (and coarser) the context view is than the window.
CONTEXT_FACTOR = 2
#: The window's changed share from which it is seen again: the decoder's recall starts to
#: fall above a quarter of a window changed (0.96 at 25 %, 0.80 at 50 %).
CONTEXT_MIN_SHARE = 0.25


def context_region(win: SceneWindow, height: int, width: int, factor: int) -> SceneWindow:
    """The region ``factor`` times ``win``'s size centred on it, shifted to lie inside the
    (height, width) grid and cut to it where the grid is smaller."""

    def span(start: int, size: int, length: int) -> tuple[int, int]:
        wide = min(size * factor, length)
        first = min(max(0, start - (wide - size) // 2), length - wide)
        return first, wide

    row, h = span(win.row, win.height, height)
    col, w = span(win.col, win.width, width)
    return SceneWindow(win.index, row, col, h, w)


def block_mean(data: np.ndarray, factor: int) -> np.ndarray:
    """(C, h, w) -> (C, ceil(h / factor), ceil(w / factor)) float32: each block's mean (the
    last row and column of blocks padded with edge values; NaN where any pixel is NaN)."""
    c, h, w = data.shape
    ph, pw = -h % factor, -w % factor
    if ph or pw:
        data = np.pad(data, ((0, 0), (0, ph), (0, pw)), mode="edge")
    blocks = data.reshape(c, (h + ph) // factor, factor, (w + pw) // factor, factor)
    return blocks.mean(axis=(2, 4), dtype=np.float32)


def needs_context(record: dict[str, Any], min_share: float) -> bool:
    """Whether a finished window is seen again: answered, not yet seen again, and its change
    mask covering at least ``min_share`` of its valid pixels."""
    if record.get("skipped") or "context" in record or not record.get("valid_pixels"):
        return False
    return record.get("mask_pixels", 0) / record["valid_pixels"] >= min_share


def _upsampled(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    up = F.interpolate(torch.from_numpy(prob)[None, None], size=shape, mode="bilinear")
    return up[0, 0].numpy()


def run_context_pass(
    runner: PairRunner,
    windows: list[SceneWindow],
    min_share: float = CONTEXT_MIN_SHARE,
    factor: int = CONTEXT_FACTOR,
    progress: bool = True,
) -> int:
    """Each finished window of ``runner.store`` that ``needs_context`` seen again over its
    context region (see the module); returns the number of windows seen again, by this call or
    the earlier run it resumes. Windows that cover the whole scene already have no wider view
    and are left as they are."""
    if min_share <= 0 or min_share > 1:
        return 0
    pair, store = runner.pair, runner.store
    grid = pair.grid
    todo, earlier = [], 0
    for win in windows:
        if not store.done(win.index):
            continue
        record = store.record(win.index)
        earlier += "context" in record
        if not needs_context(record, min_share):
            continue
        region = context_region(win, grid.height, grid.width, factor)
        if (region.height, region.width) != (win.height, win.width):
            todo.append((win, region, record))
    if not todo:
        return earlier
    logger.info("%d window(s) mostly changed: seen again at 1/%d resolution", len(todo), factor)
    change = runner.open_change()
    for win, region, record in tqdm(todo, desc="context", unit="win", disable=not progress):
        data = np.concatenate(pair.read(region.row, region.col, region.height, region.width))
        coarse = block_mean(data, factor)
        del data
        before, after = runner.dated(coarse, region)
        scaled = before.transform @ Affine.scale(factor) if before.transform else None
        before = dataclasses.replace(before, transform=scaled)
        after = dataclasses.replace(after, transform=scaled)
        prepared = change.prepare([(before, after)], runner.scalings)
        (answer,) = change.answer(prepared, classes=False)
        assert answer.prob is not None  # a change answer always has its probability
        wide = _upsampled(answer.prob, (coarse.shape[1] * factor, coarse.shape[2] * factor))
        r0, c0 = win.row - region.row, win.col - region.col
        seen = wide[r0 : r0 + win.height, c0 : c0 + win.width]
        arrays = store.arrays(win.index)
        # A window killed between its two files has the merged prob: its own is prob_window.
        own = arrays.get("prob_window", arrays["prob"]).astype(np.float32)
        merged = np.maximum(own, seen)
        valid = np.unpackbits(arrays["valid"])[: win.height * win.width].reshape(own.shape) > 0
        record["context"] = {
            "factor": factor,
            "region": [region.row, region.col, region.height, region.width],
            "mask_pixels_window": record.get("mask_pixels", 0),
        }
        record["mask_pixels"] = int(((merged >= 0.5) & valid).sum())
        arrays.update(prob=merged.astype(np.float16), prob_window=own.astype(np.float16))
        store.save(win.index, record, arrays)
    return earlier + len(todo)
