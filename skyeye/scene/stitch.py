"""Stitch the windows' mask probabilities into one mask on the scene's grid, strip by strip.

Overlapping windows are blended with a linear ramp weight (`blend_weight`), so the mask fades
from one window's opinion to the next instead of jumping at a border. Only one strip of rows
(window height x scene width) is in memory at a time; the mask goes to a tiled GeoTIFF and then
to a Cloud-Optimized GeoTIFF (GDAL's COG driver: tiled, DEFLATE, overviews, nodata kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from skyeye.atomic import atomic_path
from skyeye.io.gdal import ReadOptions
from skyeye.scene.source import Grid
from skyeye.scene.store import WindowStore
from skyeye.scene.windows import SceneWindow, blend_weight

#: Values of the mask GeoTIFF.
INSIDE, OUTSIDE, NODATA = 1, 0, 255


@dataclass
class MaskStats:
    """Pixel counts of the stitched mask and what the preview needs."""

    mask_pixels: int = 0
    valid_pixels: int = 0
    row_sum: float = 0.0
    col_sum: float = 0.0
    thumb: np.ndarray | None = None  # (th, tw) uint8 mask at the preview's decimation
    extra: dict = field(default_factory=dict)


def thumb_offsets(start: int, step: int) -> int:
    """First local index whose global index is a multiple of `step`."""
    return (-start) % step


#: A window's layers to blend, (L, h, w) float32, from its stored arrays (None: all zero).
Layers = Callable[[dict[str, np.ndarray], SceneWindow], "np.ndarray | None"]
#: Called with each strip after its mask is made: (first row, blended layers (L, rows, W),
#: valid (rows, W) bool, mask (rows, W) uint8).
OnStrip = Callable[[int, np.ndarray, np.ndarray, np.ndarray], None]


def prob_layer(arrays: dict[str, np.ndarray], win: SceneWindow) -> np.ndarray | None:
    """The window's mask probability as the one layer (None when its answer had no mask)."""
    return arrays["prob"][None] if "prob" in arrays else None


def blend_strips(
    store: WindowStore,
    windows: list[SceneWindow],
    grid: Grid,
    overlap: int,
    layers: Layers = prob_layer,
    n_layers: int = 1,
    strip: int | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per strip of `strip` rows (default: the windows' height): (first row, the windows'
    layers blended by `blend_weight` (n_layers, rows, W) float32, valid (rows, W) bool: pixels
    some window saw as valid). A window without layers counts as zeros with its weight; with
    several layers, a layer a window gives as NaN (its first value) is left out of that
    window's share of the mean."""
    strip = strip or max(w.height for w in windows)
    weights: dict[tuple[int, int], np.ndarray] = {}
    for r0 in range(0, grid.height, strip):
        r1 = min(grid.height, r0 + strip)
        total = np.zeros((n_layers, r1 - r0, grid.width), np.float32)
        wsum = np.zeros(total.shape[1:], np.float32)
        valid = np.zeros(total.shape[1:], bool)
        # Several layers: each its own weight sum (a window may leave a layer out).
        lsum = np.zeros_like(total) if n_layers > 1 else None
        for win in windows:
            if win.row >= r1 or win.row + win.height <= r0 or not store.done(win.index):
                continue
            if store.record(win.index).get("skipped"):
                continue
            arrays = store.arrays(win.index)
            a0, a1 = max(r0, win.row), min(r1, win.row + win.height)
            local = slice(a0 - win.row, a1 - win.row)
            out_rows = slice(a0 - r0, a1 - r0)
            cols = slice(win.col, win.col + win.width)
            ok = np.unpackbits(arrays["valid"])[: win.height * win.width]
            ok = ok.reshape(win.height, win.width)[local].astype(bool)
            key = (win.height, win.width)
            if key not in weights:
                weights[key] = blend_weight(win.height, win.width, overlap)
            weight = weights[key][local]
            valid[out_rows, cols] |= ok
            wsum[out_rows, cols] += weight
            values = layers(arrays, win)
            if values is None:
                if lsum is not None:
                    lsum[:, out_rows, cols] += weight
                continue
            for k in range(n_layers):
                if lsum is not None:
                    if np.isnan(values[k].flat[0]):  # no opinion on this layer: not counted
                        continue
                    lsum[k, out_rows, cols] += weight
                total[k, out_rows, cols] += weight * values[k][local].astype(np.float32)
        den = wsum if lsum is None else lsum
        np.divide(total, den, out=total, where=den > 0)
        total[np.broadcast_to(den <= 0, total.shape)] = 0.0
        yield r0, total, valid


def stitch_mask(
    store: WindowStore,
    windows: list[SceneWindow],
    grid: Grid,
    overlap: int,
    target: Path,
    thumb_step: int,
    work: Path,
    threshold: float = 0.5,
    read_options: ReadOptions | None = None,
    *,
    layers: Layers = prob_layer,
    n_layers: int = 1,
    strip: int | None = None,
    on_strip: OnStrip | None = None,
) -> MaskStats:
    """Write the stitched uint8 mask (1 inside, 0 outside, 255 nodata) of the first of the
    windows' `layers` (default: their mask probability) as a COG at `target` (compressed on
    `read_options`' threads); `on_strip` sees every strip's blended layers (`blend_strips`)."""
    stats = MaskStats()
    th, tw = -(-grid.height // thumb_step), -(-grid.width // thumb_step)
    stats.thumb = np.full((th, tw), NODATA, np.uint8)
    profile = dict(
        driver="GTiff",
        height=grid.height,
        width=grid.width,
        count=1,
        dtype="uint8",
        nodata=NODATA,
        crs=grid.crs,
        transform=grid.transform,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        BIGTIFF="IF_SAFER",
    )
    if grid.crs is None and grid.transform.is_identity:
        # A photo: pixel coordinates, which a GeoTIFF without a geotransform already means.
        del profile["crs"], profile["transform"]
    with rasterio.Env(**(read_options or ReadOptions()).gdal_env()):
        raw = work / "stitch.tif"
        try:
            with rasterio.open(raw, "w", **profile) as dst:
                for r0, blended, valid in blend_strips(
                    store, windows, grid, overlap, layers, n_layers, strip
                ):
                    r1 = r0 + valid.shape[0]
                    prob = blended[0]
                    mask = np.where(prob >= threshold, INSIDE, OUTSIDE).astype(np.uint8)
                    mask[~valid] = NODATA
                    if on_strip is not None:
                        on_strip(r0, blended, valid, mask)
                    dst.write(mask, 1, window=Window(0, r0, grid.width, r1 - r0))
                    inside = mask == INSIDE
                    stats.mask_pixels += int(inside.sum())
                    stats.valid_pixels += int(valid.sum())
                    rows, cols_ = np.nonzero(inside)
                    stats.row_sum += float((rows + r0).sum(dtype=np.float64))
                    stats.col_sum += float(cols_.sum(dtype=np.float64))
                    oy = thumb_offsets(r0, thumb_step)
                    sub = mask[oy::thumb_step, ::thumb_step]
                    t0 = (r0 + oy) // thumb_step
                    stats.thumb[t0 : t0 + sub.shape[0], : sub.shape[1]] = sub
            with atomic_path(target) as cog:
                rasterio.shutil.copy(
                    raw,
                    cog,
                    driver="COG",
                    COMPRESS="DEFLATE",
                    BLOCKSIZE=512,
                    OVERVIEW_RESAMPLING="NEAREST",
                    NUM_THREADS="ALL_CPUS",
                    BIGTIFF="IF_SAFER",
                )
        finally:
            raw.unlink(missing_ok=True)
    return stats
