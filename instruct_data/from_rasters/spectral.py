"""Masks from spectral indices: water (NDWI / MNDWI), vegetation (NDVI), cloud (brightness tests).

These are rule-based labels, not ground truth: every conversation built on them says so in
``meta.label_source`` (the formula, bands and thresholds used). Bands are found by wavelength, so
any sensor with the needed bands works (Sentinel-2, Landsat, NAIP for NDVI).
"""

from __future__ import annotations

import numpy as np

from skyeye.errors import MissingBandError
from skyeye.io.band_roles import ROLES, role_band_index
from skyeye.io.raster import RasterImage

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


def band_index(img: RasterImage, role: str) -> int | None:
    """Index of the band for ``role`` (blue/green/red/nir/cirrus/swir1) by wavelength, or None."""
    return role_band_index(img.wavelengths, role)


def _band(img: RasterImage, role: str, scale: float, need: str) -> np.ndarray:
    i = band_index(img, role)
    if i is None:
        raise MissingBandError(
            f"{img.path}: {need} needs a {role} band ({ROLES[role][0]}-{ROLES[role][1]} µm); "
            f"bands are {img.band_names} with wavelengths {img.wavelengths}: add it or drop the class"
        )
    return img.data[i].astype(np.float32) * scale


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (a - b) / (a + b)
    out[~np.isfinite(out)] = np.nan
    return out


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
        g = _band(img, "green", scale, "water")
        other = "nir" if water_index == "ndwi" else "swir1"
        x = _band(img, other, scale, "water")
        water = _nd(g, x) > th[water_index]
        rules["water"] = (
            f"{water_index.upper()} = ({nm('green')} - {nm(other)}) / ({nm('green')} + {nm(other)})"
            f" > {th[water_index]}"
        )
        if band_index(img, "blue") is not None and band_index(img, "red") is not None:
            vis = (g + _band(img, "blue", scale, "water") + _band(img, "red", scale, "water")) / 3
            water &= vis < th["water_visible"]
            rules["water"] += f" and mean visible < {th['water_visible']}"
        masks["water"] = water
    if "vegetation" in classes:
        r = _band(img, "red", scale, "vegetation")
        n = _band(img, "nir", scale, "vegetation")
        masks["vegetation"] = _nd(n, r) > th["ndvi"]
        rules["vegetation"] = (
            f"NDVI = ({nm('nir')} - {nm('red')}) / ({nm('nir')} + {nm('red')}) > {th['ndvi']}"
        )
    if "cloud" in classes:
        b = _band(img, "blue", scale, "cloud")
        g = _band(img, "green", scale, "cloud")
        r = _band(img, "red", scale, "cloud")
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
            s1 = _band(img, "swir1", scale, "cloud")
            cloud &= ~(_nd(g, s1) > th["cloud_ndsi"])
            rule += f", NDSI({nm('green')}, {nm('swir1')}) < {th['cloud_ndsi']}"
        if band_index(img, "cirrus") is not None:
            cloud |= _band(img, "cirrus", scale, "cloud") > th["cirrus"]
            rule += f"; or cirrus {nm('cirrus')} > {th['cirrus']}"
        masks["cloud"] = cloud
        rules["cloud"] = rule + f" (reflectance = value x {scale:g})"
    return masks, rules


def sar_water_mask(img: RasterImage, threshold_db: float) -> tuple[np.ndarray, str]:
    """Water where the VV backscatter (dB), box-averaged, is below ``threshold_db``."""
    upper = [n.upper() for n in img.band_names]
    if "VV" not in upper:
        raise MissingBandError(
            f"{img.path}: water_index vv_db needs a band named VV (backscatter in dB); bands "
            f"are {img.band_names}: name the bands or use ndwi/mndwi on an optical image"
        )
    vv_db = img.data[upper.index("VV")].astype(np.float64)
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
