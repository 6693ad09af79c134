"""Masks from spectral indices: water (NDWI / MNDWI), vegetation (NDVI), cloud (brightness tests).

These are rule-based labels, not ground truth: every conversation built on them says so in
``meta.label_source`` (the formula, bands and thresholds used). Bands are found by wavelength, so
any sensor with the needed bands works (Sentinel-2, Landsat, NAIP for NDVI). The water rules
(optical and SAR) and the normalised difference live in `skyeye.evaluation.label_rules`, where
evaluation scores against them: one copy of each label rule.
"""

from __future__ import annotations

import numpy as np

from skyeye.errors import MissingBandError
from skyeye.evaluation.label_rules import (
    DEFAULT_THRESHOLDS,
    SAR_WINDOW,
    band_index,
    box_mean,
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
        b = reflectance(img, "blue", scale, "cloud")
        g = reflectance(img, "green", scale, "cloud")
        r = reflectance(img, "red", scale, "cloud")
        vis = (b + g + r) / 3
        with np.errstate(divide="ignore", invalid="ignore"):
            white = (np.abs(b - vis) + np.abs(g - vis) + np.abs(r - vis)) / vis
        hot = b - 0.5 * r - 0.08  # haze-optimised transform (Zhang et al. 2002)
        cloud = (
            (b > th["cloud_blue"])
            & (vis > th["cloud_visible"])
            & (white < th["cloud_whiteness"])
            & (hot > 0)
        )
        rule = (
            f"brightness test: blue {nm('blue')} > {th['cloud_blue']}, mean visible > "
            f"{th['cloud_visible']}, whiteness < {th['cloud_whiteness']}, HOT > 0"
        )
        if band_index(img, "swir1") is not None:
            s1 = reflectance(img, "swir1", scale, "cloud")
            cloud &= ~(normalized_difference(g, s1) > th["cloud_ndsi"])
            rule += f", NDSI({nm('green')}, {nm('swir1')}) < {th['cloud_ndsi']}"
        if band_index(img, "cirrus") is not None:
            cloud |= reflectance(img, "cirrus", scale, "cloud") > th["cirrus"]
            rule += f"; or cirrus {nm('cirrus')} > {th['cirrus']}"
        masks["cloud"] = cloud
        rules["cloud"] = rule + f" (reflectance = value x {scale:g})"
    return masks, rules
