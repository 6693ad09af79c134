"""Masks from spectral indices: water (NDWI / MNDWI), vegetation (NDVI), cloud (brightness tests).

These are rule-based labels, not ground truth: every conversation built on them says so in
``meta.label_source`` (the formula, bands and thresholds used). Bands are found by wavelength, so
any sensor with the needed bands works (Sentinel-2, Landsat, NAIP for NDVI). The water rules
(optical and SAR), the cloud rule and the normalised difference live in
`skyeye.grounding.label_rules`, where evaluation scores against them and the change answers leave
clouds out by them: one copy of each label rule.
"""

from __future__ import annotations

import numpy as np

from skyeye.errors import MissingBandError
from skyeye.grounding.label_rules import (
    DEFAULT_THRESHOLDS,
    SAR_WINDOW,
    band_index,
    box_mean,
    cloud_rule_mask,
    normalized_difference,
    reflectance,
    sar_water_mask,
    water_index_mask,
)
from skyeye.io.raster import RasterImage

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MissingBandError",
    "SAR_WINDOW",
    "band_index",
    "box_mean",
    "index_masks",
    "sar_water_mask",
]


def index_masks(
    img: RasterImage,
    classes: list[str],
    scale: float,
    water_index: str = "ndwi",
    thresholds: dict[str, float] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Boolean masks (H, W) per requested class and a text description of each rule.

    img.data (C, H, W) times ``scale`` must be 0-1 reflectance (needed by the cloud test only;
    the normalised differences do not depend on it).
    """
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    names = img.band_names
    masks: dict[str, np.ndarray] = {}
    rules: dict[str, str] = {}

    def nm(role: str) -> str:
        return names[band_index(img, role)]  # type: ignore[index]

    if "water" in classes and water_index == "vv_db":
        masks["water"], rules["water"] = sar_water_mask(img, th["vv_db"])
    elif "water" in classes:
        masks["water"], rules["water"] = water_index_mask(
            img,
            scale,
            water_index,  # type: ignore[arg-type]
            th,
        )
    if "vegetation" in classes:
        r = reflectance(img, "red", scale, "vegetation")
        n = reflectance(img, "nir", scale, "vegetation")
        masks["vegetation"] = normalized_difference(n, r) > th["ndvi"]
        rules["vegetation"] = (
            f"NDVI = ({nm('nir')} - {nm('red')}) / ({nm('nir')} + {nm('red')}) > {th['ndvi']}"
        )
    if "cloud" in classes:
        masks["cloud"], rules["cloud"] = cloud_rule_mask(img, scale, th)
    return masks, rules
