"""Two dates of one place read window by window on the first date's grid (a whole-scene change run).

The first image ("before") is a `SceneSource` and its grid is the run's grid (its gsd, bbox and
band rules as for one scene). The second ("after") is opened as a `SceneSource` of its own (band
names, sensor, wavelengths, value scaling) and read onto the first one's grid window by window:
directly when both lie on one grid, else through one GDAL warped VRT per file onto the whole
grid (bilinear, NaN nodata; `rasterio.vrt.WarpedVRT`), from which each window is a plain read,
so no date is ever held whole. As `skyeye.io.align.align_to_first` does for images in memory,
every pixel outside the area valid in both dates is NaN in both. Footprints that do not overlap
are a `NoOverlapError` naming both; a partial overlap is said (`PairSource.note`) and the grid is
cut to the overlap, so only the overlap is analysed.

Dates: the user's (``dates``) over the files' own (acquisition tags, Sentinel / Landsat product
names; `skyeye.io.dates`); dates that run backwards are refused (`check_date_order`, the chat's
rule).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from skyeye.chat.multi_date import check_date_order
from skyeye.errors import AlignmentError, NoOverlapError
from skyeye.grounding.change import shared_bands
from skyeye.io.align import FULL_OVERLAP
from skyeye.io.dates import acquisition_tag_date, date_from_paths
from skyeye.io.gdal import ReadOptions
from skyeye.scene.source import SceneSource

logger = logging.getLogger(__name__)

Source = str | os.PathLike | Sequence[str | os.PathLike]

__all__ = ["PairSource", "scene_date"]


def scene_date(scene: SceneSource) -> str | None:
    """A scene's acquisition date: its file's acquisition tags, else its files' or folder's
    product names (None when neither says)."""
    if len(scene.srcs) == 1:
        found = acquisition_tag_date(scene.srcs[0])
        if found is not None:
            return found
    return date_from_paths([scene.label, *scene.files])


def _bounds(scene: SceneSource) -> tuple[float, float, float, float]:
    g = scene.grid
    minx, miny, maxx, maxy = g.bounds_of(0, 0, g.width, g.height)
    return minx, miny, maxx, maxy


class PairSource:
    """Before and after of one place, read as window pairs on the before image's grid.

    Args:
        before / after: a raster file, band folder or list of band files each.
        dates: per image an ISO date or None (the file's own), e.g. from ``--date``.
        gsd, bbox, bbox_crs: as for `SceneSource`, of the before image (the run's grid).
        sensor, band_names, wavelengths: as for `SceneSource`, of both images (None: each
            image's own, so two sensors may be compared).
        read_options: GDAL threads and block cache of both.

    Attributes: ``grid`` (the run's grid), ``before`` / ``after`` (their `SceneSource`s),
    ``dates`` (ISO or None each), ``overlap`` (share of the before image's footprint the after
    image covers, by bounds), ``note`` (a sentence when only part of it is compared).

    Raises NoOverlapError (no common footprint), AlignmentError (an image without georeference
    of another size), ValueError (dates backwards), RasterReadError / SceneError as `SceneSource`.
    """

    def __init__(
        self,
        before: Source,
        after: Source,
        *,
        dates: Sequence[str | None] | None = None,
        gsd: float | None = None,
        bbox: Sequence[float] | None = None,
        bbox_crs: str | None = None,
        sensor: str | None = None,
        band_names: Sequence[str] | None = None,
        wavelengths: Sequence[float] | None = None,
        read_options: ReadOptions | None = None,
    ) -> None:
        self._stack = ExitStack()
        opts: dict[str, Any] = dict(
            gsd=gsd, bbox=bbox, bbox_crs=bbox_crs, sensor=sensor, band_names=band_names,
            wavelengths=wavelengths, read_options=read_options,
        )  # fmt: skip
        try:
            bands: dict[str, Any] = dict(
                sensor=sensor, band_names=band_names, wavelengths=wavelengths
            )
            self.after = self._stack.enter_context(
                SceneSource(after, read_options=read_options, **bands)
            )
            self.before = self._stack.enter_context(SceneSource(before, **opts))
            self.dates = self._dates(dates)
            # No band in common (radar against optical): nothing to compare, one line, exit 2.
            shared_bands(self.before, self.after, ("the first --image", "the second --image"))
            self.overlap, cut = self._overlap()
            if cut is not None:
                self.before.close()
                self.before = self._stack.enter_context(
                    SceneSource(before, **(opts | {"bbox": cut, "bbox_crs": None}))
                )
            self._vrts = self._warped()
        except BaseException:
            self.close()
            raise
        self.grid = self.before.grid
        self.note = None
        if self.overlap < FULL_OVERLAP:
            self.note = (
                f"the dates overlap on {100 * self.overlap:.1f}% of the first image: only the "
                "overlap is compared"
            )
            logger.warning("%s, %s: %s", self.before.label, self.after.label, self.note)

    # ------------------------------------------------------------------ opening
    def _dates(self, given: Sequence[str | None] | None) -> list[str | None]:
        if given and len(given) != 2:
            raise ValueError(
                f"{len(given)} --date for 2 --image: give one date per image, in order"
            )
        own = [scene_date(self.before), scene_date(self.after)]
        dates = [g if g is not None else o for g, o in zip(given or [None, None], own, strict=True)]
        check_date_order(list(zip((self.before.label, self.after.label), dates, strict=True)))
        return dates

    def _overlap(self) -> tuple[float, list[float] | None]:
        """(share of the before grid's footprint inside the after image's, the box to cut the
        before grid to, or None to keep it)."""
        a, b = self.before, self.after
        if a.grid.crs is None or b.grid.crs is None:
            if (a.grid.height, a.grid.width) != (b.grid.height, b.grid.width):
                raise AlignmentError(
                    f"{a.label} ({a.grid.width}x{a.grid.height} px) and {b.label} "
                    f"({b.grid.width}x{b.grid.height} px) differ in size and one has no "
                    "georeference: give both a CRS and transform (GeoTIFFs) or one size"
                )
            return 1.0, None
        ab = _bounds(a)
        bb = transform_bounds(b.grid.crs, a.grid.crs, *_bounds(b), densify_pts=21)
        cut = [max(ab[0], bb[0]), max(ab[1], bb[1]), min(ab[2], bb[2]), min(ab[3], bb[3])]
        if cut[0] >= cut[2] or cut[1] >= cut[3]:
            raise NoOverlapError(
                f"{a.label} and {b.label} do not overlap (their footprints share no area): give "
                "two images of the same place"
            )
        share = (cut[2] - cut[0]) * (cut[3] - cut[1]) / ((ab[2] - ab[0]) * (ab[3] - ab[1]))
        if share >= FULL_OVERLAP or not a.grid.transform.is_rectilinear:
            return min(share, 1.0), None  # a rotated grid keeps its pixels; NaN marks the rest
        return share, cut

    def _warped(self) -> list[WarpedVRT] | None:
        """One warped VRT per after-file onto the before grid, or None when both share a grid."""
        a, b = self.before.grid, self.after.grid
        if b.crs == a.crs and (b.height, b.width) == (a.height, a.width):
            tol = 1e-6 * max(abs(a.transform.a), abs(a.transform.e), 1e-12)
            if a.transform.almost_equals(b.transform, precision=tol):
                return None
        if self.after.photo is not None:
            raise AlignmentError(
                f"{self.after.label}: a photo has no georeference to be put on {self.before.label}'s"
                " grid: give a GeoTIFF"
            )
        return [
            self._stack.enter_context(
                WarpedVRT(
                    src,
                    crs=a.crs,
                    transform=a.transform,
                    width=a.width,
                    height=a.height,
                    resampling=Resampling.bilinear,
                    src_nodata=src.nodata,
                    nodata=np.nan,
                    dtype="float32",
                )
            )
            for src in self.after.srcs
        ]

    # ------------------------------------------------------------------ reading
    def _read_after(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        if self._vrts is None:
            return self.after.read(row, col, height, width)
        window = Window(col, row, width, height)
        b = self.after
        if b.band_files:
            data = np.stack([vrt.read(1, window=window) for vrt in self._vrts])
        else:
            data = self._vrts[0].read(b.indexes, window=window)
            if b.alpha is not None:
                alpha = self._vrts[0].read(b.alpha, window=window)
                data[:, ~(alpha > 0)] = np.nan
        if b.nodata is not None and not np.isnan(b.nodata):
            data[data == np.float32(b.nodata)] = np.nan
        data[~np.isfinite(data)] = np.nan
        return data

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(before, after) of the grid's window at (row, col): (C_b, h, w), (C_a, h, w) float32,
        NaN where either date has no data."""
        first = self.before.read(row, col, height, width)
        second = self._read_after(row, col, height, width)
        common = np.isfinite(first).all(axis=0) & np.isfinite(second).all(axis=0)
        first[:, ~common] = np.nan
        second[:, ~common] = np.nan
        return first, second

    @property
    def label(self) -> str:
        return f"{self.before.label} -> {self.after.label}"

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> PairSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
