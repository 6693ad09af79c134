"""Change between two aligned dates, without a model: the pieces the chat and evaluation share.

* `shared_bands`: the bands both dates have (same wavelength, else same name): a change is only
  measured on what both images saw, so a band one date lacks is left out, never compared.
* `change_magnitude`: per-pixel change over those bands, each band standardised per date over
  the common valid area (z-scores), so a sensor's gain or a season's brightness shift is not
  change; the magnitude is the root-mean-square of the standardised differences.
* `otsu_change`: the classic unsupervised change map (Otsu's threshold on the magnitude).
* `class_change`: a class mask on each date -> gained / lost / changed, inside the common valid
  area (clouds and nodata of either date excluded).

Both images must already be on one grid (`skyeye.io.align.align_to_first`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from skyeye.errors import AlignmentError, MissingBandError
from skyeye.io.image import RasterImage

__all__ = [
    "ChangeMap",
    "ClassChange",
    "change_magnitude",
    "class_change",
    "otsu_change",
    "otsu_threshold",
    "shared_bands",
]

#: Two bands are "the same" when their centre wavelengths are this close (µm): Sentinel-2 B04
#: (0.665) and Landsat 8 B4 (0.655) are both red; B08 (0.842) and B8A (0.865) are not paired.
WAVELENGTH_TOLERANCE = 0.015


@dataclass
class ChangeMap:
    """mask: (H, W) bool, changed. valid: (H, W) bool, pixels both dates have.
    magnitude: (H, W) float32, NaN outside ``valid``. threshold: the cut on the magnitude."""

    mask: np.ndarray
    valid: np.ndarray
    magnitude: np.ndarray
    threshold: float


@dataclass
class ClassChange:
    """Per-pixel transitions of one class, (H, W) bool each, all False outside ``valid``."""

    gained: np.ndarray
    lost: np.ndarray
    valid: np.ndarray

    @property
    def changed(self) -> np.ndarray:
        return self.gained | self.lost


class HasBands(Protocol):
    """What `shared_bands` reads: an image as read (`RasterImage`) or a scene's source."""

    @property
    def band_names(self) -> Sequence[str]: ...

    @property
    def wavelengths(self) -> Sequence[float | None] | None: ...


def shared_bands(
    a: HasBands, b: HasBands, names: tuple[str, str] | None = None
) -> list[tuple[int, int]]:
    """(band of a, band of b) pairs that are the same band: by wavelength when both images have
    wavelengths, else by band name (case-insensitive). Each band is used once.

    names: how the error names the two images (default their ``path``).
    Raises MissingBandError when the dates share no band."""
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    if a.wavelengths is not None and b.wavelengths is not None:
        for i, wa in enumerate(a.wavelengths):
            if wa is None:
                continue
            best = min(
                (
                    (abs(wa - wb), j)
                    for j, wb in enumerate(b.wavelengths)
                    if wb is not None and j not in used
                ),
                default=None,
            )
            if best is not None and best[0] <= WAVELENGTH_TOLERANCE:
                pairs.append((i, best[1]))
                used.add(best[1])
    else:
        names_b = {n.upper(): j for j, n in enumerate(b.band_names)}
        pairs = [
            (i, names_b[n.upper()]) for i, n in enumerate(a.band_names) if n.upper() in names_b
        ]
    if not pairs:
        na, nb = names or (
            getattr(a, "path", None) or "image 1",
            getattr(b, "path", None) or "image 2",
        )
        raise MissingBandError(
            f"{na} ({', '.join(a.band_names)}) and {nb} ({', '.join(b.band_names)}) share no "
            "band, so no change between them can be measured: compare images with at least one "
            f"band in common (the same wavelength within {WAVELENGTH_TOLERANCE} µm, or the same "
            "band name)"
        )
    return pairs


def _check_grid(a: RasterImage, b: RasterImage) -> None:
    if a.data.shape[1:] != b.data.shape[1:]:
        raise AlignmentError(
            f"{a.path} {a.data.shape[1:]} and {b.path} {b.data.shape[1:]} are on different grids: "
            "align them first (skyeye.io.align.align_to_first)"
        )


def change_magnitude(a: RasterImage, b: RasterImage) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel change between two dates on one grid over their shared bands.

    Returns (magnitude (H, W) float32, NaN where either date has no data; valid (H, W) bool).
    """
    _check_grid(a, b)
    pairs = shared_bands(a, b)
    da = a.data[[i for i, _ in pairs]].astype(np.float32)
    db = b.data[[j for _, j in pairs]].astype(np.float32)
    valid = np.asarray(np.isfinite(da).all(axis=0) & np.isfinite(db).all(axis=0))
    magnitude: np.ndarray = np.full(valid.shape, np.nan, dtype=np.float32)
    if not valid.any():
        return magnitude, valid
    total = np.zeros(int(valid.sum()), dtype=np.float32)
    for band_a, band_b in zip(da, db, strict=True):
        za, zb = _standardise(band_a[valid]), _standardise(band_b[valid])
        total += (zb - za) ** 2
    magnitude[valid] = np.sqrt(total / len(pairs))
    return magnitude, valid


def _standardise(values: np.ndarray) -> np.ndarray:
    std = float(values.std())
    return (values - values.mean()) / (std if std > 0 else 1.0)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of the finite ``values`` (any shape); +inf when they are all equal."""
    from skimage.filters import threshold_otsu

    finite = values[np.isfinite(values)]
    if finite.size == 0 or float(finite.min()) == float(finite.max()):
        return float("inf")
    return float(threshold_otsu(finite))


def otsu_change(a: RasterImage, b: RasterImage) -> ChangeMap:
    """The image-difference baseline: changed where `change_magnitude` > its Otsu threshold."""
    magnitude, valid = change_magnitude(a, b)
    threshold = otsu_threshold(magnitude)
    mask = valid & (np.nan_to_num(magnitude, nan=-np.inf) > threshold)
    return ChangeMap(mask=mask, valid=valid, magnitude=magnitude, threshold=threshold)


def class_change(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray | None = None
) -> ClassChange:
    """Transitions of one class from two (H, W) bool masks on one grid; ``valid`` (H, W) bool
    limits them to pixels both dates see (clouds and nodata excluded by the caller)."""
    if before.shape != after.shape:
        raise AlignmentError(
            f"class masks of shapes {before.shape} and {after.shape}: put both dates on one "
            "grid first (skyeye.io.align.align_to_first)"
        )
    ok = np.ones(before.shape, bool) if valid is None else valid.astype(bool)
    return ClassChange(gained=~before & after & ok, lost=before & ~after & ok, valid=ok)
