"""Change baselines and change-mask scores: the numbers a change decoder must beat.

Baselines (`CHANGE_BASELINES`, each ``f(before, after) -> (H, W) bool mask or None`` when the
bands do not allow it; both images on one grid):

* ``otsu-difference``: Otsu's threshold on the standardised image-difference magnitude over the
  bands both dates share (`skyeye.grounding.change.otsu_change`);
* ``water-index`` / ``vegetation-index`` / ``built-up-index``: the class by its index rule on each
  date (NDWI > 0, the trivial water baseline of `label_rules`; NDVI > ``DEFAULT_THRESHOLDS['ndvi']``
  as the from-rasters vegetation labels; NDBI = (SWIR1 - NIR) / (SWIR1 + NIR) > 0, Zha et al.
  2003), changed where the class masks differ;
* ``dndwi-otsu`` / ``dndvi-otsu`` / ``dndbi-otsu``: Otsu's threshold on |index(after) -
  index(before)|.

Scores (`change_scores`): gIoU / cIoU by the one IoU rule of `skyeye.evaluation.metrics` and F1 of
the changed class, each counted only where both dates have data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from skyeye.evaluation.metrics import iou_summary, mask_iou
from skyeye.grounding.change import class_change, otsu_change, otsu_threshold
from skyeye.grounding.label_rules import (
    DEFAULT_THRESHOLDS,
    band_index,
    index_threshold_mask,
    normalized_difference,
)
from skyeye.io.image import RasterImage

__all__ = [
    "CHANGE_BASELINES",
    "NDBI_BUILTUP",
    "change_scores",
    "get_change_baseline",
    "list_change_baselines",
    "spectral_index",
]

ChangeBaseline = Callable[[RasterImage, RasterImage], np.ndarray | None]

#: NDBI above this is built-up (Zha, Gao & Ni 2003: built-up areas have NDBI > 0).
NDBI_BUILTUP = 0.0
#: Index name -> (the band role in the numerator's first term, the other role).
INDEX_ROLES: dict[str, tuple[str, str]] = {
    "ndwi": ("green", "nir"),
    "ndvi": ("nir", "red"),
    "ndbi": ("swir1", "nir"),
}


def _valid(a: RasterImage, b: RasterImage) -> np.ndarray:
    return a.valid_mask & b.valid_mask


def spectral_index(img: RasterImage, index: str) -> np.ndarray | None:
    """(H, W) float32 NDWI / NDVI / NDBI by the band-role table, NaN without data; None when the
    image lacks a band the index needs."""
    first, second = INDEX_ROLES[index]
    i, j = band_index(img, first), band_index(img, second)
    if i is None or j is None:
        return None
    return normalized_difference(img.data[i].astype(np.float32), img.data[j].astype(np.float32))


def _class_mask(img: RasterImage, name: str) -> np.ndarray | None:
    if name == "water":
        return index_threshold_mask(img, "ndwi", DEFAULT_THRESHOLDS["ndwi"])
    index = {"vegetation": "ndvi", "built-up": "ndbi"}[name]
    values = spectral_index(img, index)
    if values is None:
        return None
    cut = DEFAULT_THRESHOLDS["ndvi"] if index == "ndvi" else NDBI_BUILTUP
    return np.nan_to_num(values, nan=-np.inf) > cut


def _class_baseline(name: str) -> ChangeBaseline:
    def baseline(a: RasterImage, b: RasterImage) -> np.ndarray | None:
        before, after = _class_mask(a, name), _class_mask(b, name)
        if before is None or after is None:
            return None
        return class_change(before, after, _valid(a, b)).changed

    baseline.__doc__ = f"{name} by its index rule on each date; changed where the masks differ."
    return baseline


def _index_otsu(index: str) -> ChangeBaseline:
    def baseline(a: RasterImage, b: RasterImage) -> np.ndarray | None:
        before, after = spectral_index(a, index), spectral_index(b, index)
        if before is None or after is None:
            return None
        delta = np.abs(after - before)
        delta[~_valid(a, b)] = np.nan
        return np.nan_to_num(delta, nan=-np.inf) > otsu_threshold(delta)

    baseline.__doc__ = f"|d{index.upper()}| above its Otsu threshold."
    return baseline


def _otsu_difference(a: RasterImage, b: RasterImage) -> np.ndarray | None:
    return otsu_change(a, b).mask


CHANGE_BASELINES: dict[str, ChangeBaseline] = {
    "otsu-difference": _otsu_difference,
    "water-index": _class_baseline("water"),
    "vegetation-index": _class_baseline("vegetation"),
    "built-up-index": _class_baseline("built-up"),
    "dndwi-otsu": _index_otsu("ndwi"),
    "dndvi-otsu": _index_otsu("ndvi"),
    "dndbi-otsu": _index_otsu("ndbi"),
}


def list_change_baselines() -> list[str]:
    """Names of the change baselines."""
    return sorted(CHANGE_BASELINES)


def get_change_baseline(name: str) -> ChangeBaseline:
    """The baseline ``name``; KeyError listing the names."""
    if name not in CHANGE_BASELINES:
        raise KeyError(f"unknown change baseline {name!r}; choose one of {list_change_baselines()}")
    return CHANGE_BASELINES[name]


def change_scores(
    preds: Sequence[np.ndarray | None],
    targets: Sequence[np.ndarray],
    valids: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """gIoU, cIoU (`skyeye.evaluation.metrics` rules) and F1 / precision / recall of the changed
    class over (H, W) bool masks, one per pair, counted where ``valids`` (both dates' data) say.

    A None prediction (the baseline does not apply) is an empty mask, counted in ``missing``.
    Returns {"n", "giou", "ciou", "f1", "precision", "recall", "missing"}.
    """
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} change masks for {len(targets)} targets")
    units = []
    tp = fp = fn = missing = 0
    for k, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        ok = np.ones(target.shape, bool) if valids is None else valids[k].astype(bool)
        gt = target.astype(bool) & ok
        if pred is None:
            missing += 1
            pred = np.zeros_like(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"pair {k}: change mask {pred.shape} and target {gt.shape} differ")
        p = pred.astype(bool) & ok
        units.append(mask_iou(p, gt))
        tp += int((p & gt).sum())
        fp += int((p & ~gt).sum())
        fn += int((~p & gt).sum())
    out: dict[str, Any] = dict(iou_summary(units))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out.update(precision=precision, recall=recall, f1=f1, missing=missing)
    return out
