"""The water and cloud label rules and the index-threshold baselines: one copy for training data,
evaluation and the chat's change answers.

`instruct_data.from_rasters` labels water and clouds with these rules (it imports them: the
library may not import `instruct_data`); the change answers (`skyeye.chat.transitions`, the scene
pair) leave out the pixels `cloud_rule_mask` finds on either date (through
`skyeye.grounding.clouds`); evaluation scores against the water rules and beside them: the label rule is
the reference of an unseen scene, the plain index thresholds (NDWI > t, MNDWI > t, VV < t dB) are
the trivial baselines. Both use one normalised difference on the same float32 reflectance, so a
baseline and the label rule agree wherever their formulas do (a float64 copy of the rule
disagreed with the labels on 4 pixels of ``examples/sentinel2_berlin_l1c.tif``).
Bands are found by wavelength (`skyeye.io.band_roles`), so any sensor with the bands works.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from skyeye.errors import MissingBandError
from skyeye.io.band_roles import ROLES, role_band_index
from skyeye.io.image import RasterImage

__all__ = [
    "DEFAULT_THRESHOLDS",
    "SAR_WINDOW",
    "band_index",
    "box_mean",
    "cloud_rule_mask",
    "index_threshold_mask",
    "normalized_difference",
    "reflectance",
    "sar_water_mask",
    "vv_threshold_mask",
    "water_index_mask",
]

WaterIndex = Literal["ndwi", "mndwi"]

DEFAULT_THRESHOLDS: dict[str, float] = {
    "ndwi": 0.0,  # McFeeters (1996): open water above 0
    "mndwi": 0.0,  # Xu (2006)
    "water_visible": 0.20,  # open water is dark: mean visible reflectance below this (not snow)
    "ndvi": 0.4,  # dense green vegetation
    "cloud_blue": 0.20,  # reflectance
    "cloud_visible": 0.22,  # mean of blue, green, red
    "cloud_whiteness": 0.25,  # sum |band - mean| / mean over blue, green, red (flat = white)
    "cloud_ndsi": 0.4,  # above: snow, not cloud
    "cirrus": 0.012,  # cirrus-band reflectance (B10 / Landsat B9)
    # SAR: calm open water reflects the radar pulse away from the sensor, so VV backscatter
    # (sigma0, dB) is low; -18 dB is a common global split (e.g. Martinis et al. 2015 report
    # tile-wise Otsu splits around -18 to -20 dB for VV).
    "vv_db": -18.0,
}
# px: box mean of VV in dB before the threshold, against speckle (averaging in dB rather than
# linear power keeps shores in place: bright land would dominate a linear mean and erode water)
SAR_WINDOW = 5
# The band each water index sets against green.
_OTHER_BAND: dict[str, str] = {"ndwi": "nir", "mndwi": "swir1"}


def band_index(img: RasterImage, role: str) -> int | None:
    """Index of the band for ``role`` (blue/green/red/nir/cirrus/swir1) by wavelength, or None."""
    return role_band_index(img.wavelengths, role)


def reflectance(img: RasterImage, role: str, scale: float, need: str) -> np.ndarray:
    """The ``role`` band as float32 times ``scale``; `MissingBandError` naming ``need`` without it."""
    i = band_index(img, role)
    if i is None:
        raise MissingBandError(
            f"{img.path}: {need} needs a {role} band ({ROLES[role][0]}-{ROLES[role][1]} µm); "
            f"bands are {img.band_names} with wavelengths {img.wavelengths}: add it or drop the class"
        )
    return img.data[i].astype(np.float32) * scale


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b); NaN where it is not finite (a zero sum, a NaN input)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (a - b) / (a + b)
    out[~np.isfinite(out)] = np.nan
    return out


def water_index_mask(
    img: RasterImage,
    scale: float,
    water_index: WaterIndex = "ndwi",
    thresholds: dict[str, float] | None = None,
) -> tuple[np.ndarray, str]:
    """The optical water label rule: (mask, rule text).

    NDWI (green, NIR) or MNDWI (green, SWIR1) > its threshold, and, when blue and red exist,
    mean visible reflectance (``data x scale``) < ``water_visible`` (open water is dark; snow and
    bright roofs are not water).
    """
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    other = _OTHER_BAND[water_index]
    g = reflectance(img, "green", scale, "water")
    x = reflectance(img, other, scale, "water")
    water = normalized_difference(g, x) > th[water_index]
    names = img.band_names
    green, oth = names[band_index(img, "green")], names[band_index(img, other)]  # type: ignore[index]
    rule = f"{water_index.upper()} = ({green} - {oth}) / ({green} + {oth}) > {th[water_index]}"
    if band_index(img, "blue") is not None and band_index(img, "red") is not None:
        blue = reflectance(img, "blue", scale, "water")
        vis = (g + blue + reflectance(img, "red", scale, "water")) / 3
        water &= vis < th["water_visible"]
        rule += f" and mean visible < {th['water_visible']}"
    return water, rule


def cloud_rule_mask(
    img: RasterImage, scale: float, thresholds: dict[str, float] | None = None
) -> tuple[np.ndarray, str]:
    """The cloud label rule (Fmask-style tests on reflectance = ``data x scale``): (mask (H, W)
    bool, rule text).

    Cloud is bright (blue > ``cloud_blue``, mean visible > ``cloud_visible``), white (the blue,
    green and red deviations from their mean, over the mean, < ``cloud_whiteness``) and hazy
    (HOT = blue - 0.5 red - 0.08 > 0, Zhang et al. 2002); with a SWIR1 band, not snow (NDSI of
    green and SWIR1 < ``cloud_ndsi``); with a cirrus band, also cirrus above ``cirrus``.
    NaN (no data) is not cloud. `MissingBandError` without blue, green or red.
    """
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    names = img.band_names

    def nm(role: str) -> str:
        return names[band_index(img, role)]  # type: ignore[index]

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
    return cloud, rule + f" (reflectance = value x {scale:g})"


def index_threshold_mask(
    img: RasterImage, water_index: WaterIndex, threshold: float = 0.0
) -> np.ndarray | None:
    """The trivial optical baseline: NDWI / MNDWI > ``threshold`` alone (no darkness test);
    None without the bands. NaN (no data) is not water."""
    other = _OTHER_BAND[water_index]
    if band_index(img, "green") is None or band_index(img, other) is None:
        return None
    nd = normalized_difference(
        reflectance(img, "green", 1.0, "water"), reflectance(img, other, 1.0, "water")
    )
    return np.nan_to_num(nd, nan=-1.0) > threshold


def _vv_band(img: RasterImage) -> int | None:
    upper = [n.upper() for n in img.band_names]
    return upper.index("VV") if "VV" in upper else None


def vv_threshold_mask(img: RasterImage, threshold_db: float) -> np.ndarray | None:
    """The trivial SAR baseline: per-pixel VV backscatter (dB) below ``threshold_db``; None
    without a band named VV. NaN is not water."""
    vv = _vv_band(img)
    if vv is None:
        return None
    return np.nan_to_num(img.data[vv], nan=0.0) < threshold_db


def sar_water_mask(img: RasterImage, threshold_db: float) -> tuple[np.ndarray, str]:
    """The SAR water label rule: VV backscatter (dB), box-averaged, below ``threshold_db``."""
    vv = _vv_band(img)
    if vv is None:
        raise MissingBandError(
            f"{img.path}: water_index vv_db needs a band named VV (backscatter in dB); bands "
            f"are {img.band_names}: name the bands or use ndwi/mndwi on an optical image"
        )
    vv_db = img.data[vv].astype(np.float64)
    finite = np.isfinite(vv_db)
    if not finite.any():
        return finite, "SAR threshold: no finite VV pixel"
    smooth = box_mean(np.where(finite, vv_db, np.median(vv_db[finite])), SAR_WINDOW)
    rule = f"SAR threshold: VV sigma0 ({SAR_WINDOW}x{SAR_WINDOW} px mean in dB) < {threshold_db} dB"
    return finite & (smooth < threshold_db), rule


def box_mean(a: np.ndarray, k: int) -> np.ndarray:
    """(H, W) mean over a k x k window, edges padded by reflection (input must be finite)."""
    r = k // 2
    p = np.pad(a, r, mode="reflect")
    c = np.cumsum(np.cumsum(p, axis=0), axis=1)
    c = np.pad(c, ((1, 0), (1, 0)))
    h, w = a.shape
    tot = c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]
    return tot / (k * k)
