"""Images of one place on one grid: the first image's (`align_to_first`).

A before/after question may bring images from different sensors, CRSs or grids (a Landsat scene
in UTM and a Sentinel-2 tile in another zone, a NAIP tile at 1 m). Each later image is warped onto
the first image's grid with ``rasterio.warp.reproject`` (bilinear for data, NaN nodata), and every
pixel outside the area valid in *all* images becomes NaN in all of them, so a comparison never
reads a pixel one date does not have. No common pixel is an error naming both images; a partial
overlap is logged and reported (`Alignment.overlap`), and only the overlap stays.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.enums import Resampling
from rasterio.warp import reproject

from skyeye.errors import AlignmentError, NoOverlapError
from skyeye.io.image import RasterImage

logger = logging.getLogger(__name__)

__all__ = ["Alignment", "align_to_first", "is_georeferenced", "overlap_note", "same_grid"]

#: Overlap shares at or above this are "full" (warping loses a pixel row at the edges).
FULL_OVERLAP = 0.999


@dataclass
class Alignment:
    """Images on the first image's grid.

    images: the inputs in order, each with data (C_i, H, W) on the first image's grid (CRS and
        transform of the first), NaN outside the common valid area; band names, wavelengths,
        path, date and ``source_shape`` are each image's own; ``extra`` adds ``aligned_to`` (the
        first image's name) and ``overlap`` (below), so a later step can say the overlap.
    valid: (H, W) bool, the pixels valid in every image.
    overlap: share of the first image's valid pixels that are valid in every image (0..1].
    warped: per image, whether it was reprojected (False: already on the grid, or taken as
        aligned because it has no georeference and the same size).
    """

    images: list[RasterImage]
    valid: np.ndarray
    overlap: float
    warped: list[bool]

    @property
    def partial(self) -> bool:
        """True when part of the first image has no counterpart in some other image."""
        return self.overlap < FULL_OVERLAP


def is_georeferenced(image: RasterImage) -> bool:
    """True when the image has both a CRS and a transform."""
    return image.crs is not None and image.transform is not None


def overlap_note(overlap: float | None) -> str | None:
    """The sentence saying that only part of the first image is compared, or None for a full
    (or unknown) overlap; ``overlap`` as `Alignment.overlap` (aligned images keep it in
    ``extra["overlap"]``)."""
    if overlap is None or overlap >= FULL_OVERLAP:
        return None
    return (
        f"the images overlap on {100 * overlap:.0f}% of the first image: only the overlap is "
        "compared (the images are cut to it, any part of it one lacks masked as no data)"
    )


def same_grid(a: RasterImage, b: RasterImage) -> bool:
    """True when both images lie on one grid: same CRS, (almost) same transform, same shape."""
    if a.data.shape[1:] != b.data.shape[1:] or a.transform is None or b.transform is None:
        return False
    if a.crs is None or a.crs != b.crs:
        return False
    tol = 1e-6 * max(abs(a.transform.a), abs(a.transform.e), 1e-12)
    return bool(a.transform.almost_equals(b.transform, precision=tol))


def _name(image: RasterImage, index: int) -> str:
    return image.path or f"image {index + 1}"


def _warp(image: RasterImage, first: RasterImage) -> np.ndarray:
    """``image``'s bands on ``first``'s grid: (C, H, W) float32, NaN where it has no data."""
    h, w = first.data.shape[1:]
    out = np.full((image.data.shape[0], h, w), np.nan, dtype=np.float32)
    for band in range(image.data.shape[0]):
        reproject(
            source=np.ascontiguousarray(image.data[band], dtype=np.float32),
            destination=out[band],
            src_transform=image.transform,
            src_crs=image.crs,
            src_nodata=np.nan,
            dst_transform=first.transform,
            dst_crs=first.crs,
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
    out[~np.isfinite(out)] = np.nan
    return out


def _check_ungeoreferenced(images: Sequence[RasterImage]) -> None:
    first = images[0]
    for k, image in enumerate(images[1:], 1):
        if image.data.shape[1:] != first.data.shape[1:]:
            lacking = [
                _name(im, i) for i, im in ((0, first), (k, image)) if not is_georeferenced(im)
            ]
            raise AlignmentError(
                f"{_name(first, 0)} ({first.data.shape[2]}x{first.data.shape[1]} px) and "
                f"{_name(image, k)} ({image.data.shape[2]}x{image.data.shape[1]} px) differ in "
                f"size and {', '.join(lacking)} has no georeference, so they cannot be put on one "
                "grid: give both images a CRS and transform (GeoTIFFs) or resample them to one "
                "size first"
            )


def align_to_first(images: Sequence[RasterImage]) -> Alignment:
    """Bring ``images`` (of one place, any sensors, CRSs or grids) onto the first image's grid.

    Images that all have a georeference are warped (bilinear, NaN nodata) onto the first image's
    CRS, transform and shape. Without a georeference on some image, images of the same (H, W)
    are taken as aligned; different sizes raise `AlignmentError`.

    Returns an `Alignment`; the inputs are not modified.

    Raises:
        NoOverlapError: some image has no valid pixel in common with the others (names both).
        AlignmentError: images without a georeference differ in size.
    """
    if not images:
        raise AlignmentError("no images to align: pass at least one image")
    first = images[0]
    georeferenced = all(is_georeferenced(im) for im in images)
    if not georeferenced:
        _check_ungeoreferenced(images)
    datas: list[np.ndarray] = [first.data]
    warped = [False]
    for image in images[1:]:
        if not georeferenced or same_grid(first, image):
            datas.append(image.data)
            warped.append(False)
        else:
            datas.append(_warp(image, first))
            warped.append(True)
    first_valid = np.isfinite(first.data).all(axis=0)
    n_first = int(first_valid.sum())
    valid = first_valid.copy()
    for k, data in enumerate(datas[1:], 1):
        own = np.isfinite(data).all(axis=0)
        if not (first_valid & own).any():
            raise NoOverlapError(
                f"{_name(first, 0)} and {_name(images[k], k)} do not overlap (no pixel valid in "
                "both on the first image's grid): give images of the same place"
            )
        valid &= own
        if not valid.any():
            raise NoOverlapError(
                f"{_name(first, 0)} and {_name(images[k], k)}: no pixel is valid in every image "
                "(each pair overlaps, all of them together do not): give images of one common area"
            )
    overlap = float(valid.sum()) / max(n_first, 1)
    aligned = []
    for image, data in zip(images, datas, strict=True):
        out = data.astype(np.float32, copy=True)
        out[:, ~valid] = np.nan
        aligned.append(
            dataclasses.replace(
                image,
                data=out,
                crs=first.crs if georeferenced else image.crs,
                transform=first.transform if georeferenced else image.transform,
                source_shape=image.source_shape,
                extra={**image.extra, "aligned_to": _name(first, 0), "overlap": overlap},
            )
        )
    result = Alignment(images=aligned, valid=valid, overlap=overlap, warped=warped)
    if result.partial:
        logger.warning(
            "%s: the images overlap on %.1f%% of the first image; only the overlap is compared",
            ", ".join(_name(im, i) for i, im in enumerate(images)),
            100 * overlap,
        )
    return result
