"""Display composites of multispectral and SAR rasters: true colour, false colour, SWIR, SAR.

A preview is an 8-bit (H, W, 3) picture of a `RasterImage` on its read grid, so overlays drawn on
it line up with the boxes and masks the model returns for that grid. Optical bands are picked by
wavelength (the band table's values), SAR bands by name; each channel gets a 2-98 % percentile
stretch over its valid pixels, and nodata (NaN) pixels are shown dark grey.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from skyeye.io.raster import RasterImage
from skyeye.io.sensors import get_sensor

logger = logging.getLogger(__name__)

NODATA_RGB = (40, 40, 40)
STRETCH_PERCENTILES = (2.0, 98.0)


@dataclass(frozen=True)
class Composite:
    """A three-channel recipe: target wavelengths (µm) for R, G, B and the largest accepted miss."""

    name: str
    wavelengths: tuple[float, float, float]
    tolerance: float


# Sentinel-2 style recipes; Landsat and NAIP bands fall within the tolerances too.
COMPOSITES: dict[str, Composite] = {
    "true colour (red, green, blue)": Composite("true colour", (0.665, 0.560, 0.490), 0.05),
    "false colour (NIR, red, green)": Composite("false colour", (0.842, 0.665, 0.560), 0.06),
    "SWIR (SWIR2, NIR, red)": Composite("SWIR", (2.19, 0.865, 0.665), 0.15),
}
SAR_COMPOSITE = "SAR (VV, VH, VV-VH)"
SINGLE_BAND_PREFIX = "band: "
FIRST_THREE = "first three bands"


def _sar_indices(image: RasterImage) -> dict[str, int]:
    """Band name (upper case) -> index for the image's SAR bands (by its sensor or VV/VH names)."""
    out: dict[str, int] = {}
    sensor = None
    if image.sensor is not None:
        try:
            sensor = get_sensor(image.sensor)
        except ValueError:
            sensor = None
    for i, name in enumerate(image.band_names):
        band = sensor.find_band(name) if sensor is not None else None
        if (band is not None and band.kind == "sar") or name.strip().upper() in ("VV", "VH"):
            out[(band.name if band is not None else name).strip().upper()] = i
    return out


def _nearest_band(
    wavelengths: Sequence[float | None], target: float, tolerance: float
) -> int | None:
    best, best_miss = None, tolerance
    for i, wl in enumerate(wavelengths):
        if wl is None:
            continue
        miss = abs(float(wl) - target)
        if miss <= best_miss:
            best, best_miss = i, miss
    return best


def _known_wavelengths(image: RasterImage) -> list[float | None]:
    if image.wavelengths is not None:
        return [float(w) for w in image.wavelengths]
    sensor = None
    if image.sensor is not None:
        try:
            sensor = get_sensor(image.sensor)
        except ValueError:
            pass
    out: list[float | None] = []
    for name in image.band_names:
        band = sensor.find_band(name) if sensor is not None else None
        out.append(band.wavelength if band is not None else None)
    return out


def composite_bands(image: RasterImage, mode: str) -> list[int]:
    """Band indices (R, G, B order; one index for a grey view) that `mode` shows for `image`.

    Raises ValueError naming the missing bands when the image cannot show `mode`.
    """
    count = image.data.shape[0]
    if mode.startswith(SINGLE_BAND_PREFIX):
        name = mode[len(SINGLE_BAND_PREFIX) :]
        if name not in image.band_names:
            raise ValueError(f"no band called {name!r}; bands are {image.band_names}")
        return [image.band_names.index(name)]
    if mode == FIRST_THREE:
        return list(range(3)) if count >= 3 else [0]
    if mode == SAR_COMPOSITE:
        sar = _sar_indices(image)
        if "VV" in sar and "VH" in sar:
            return [sar["VV"], sar["VH"], -1]  # -1: the VV-VH difference channel
        raise ValueError(f"{mode} needs VV and VH bands; bands are {image.band_names}")
    recipe = COMPOSITES.get(mode)
    if recipe is None:
        raise ValueError(f"unknown preview {mode!r}; choose one of {preview_modes(image)}")
    wavelengths = _known_wavelengths(image)
    picked = [_nearest_band(wavelengths, t, recipe.tolerance) for t in recipe.wavelengths]
    if any(p is None for p in picked):
        missing = [f"{t} µm" for t, p in zip(recipe.wavelengths, picked, strict=True) if p is None]
        raise ValueError(
            f"{recipe.name} needs bands near {', '.join(missing)}; this image has wavelengths "
            f"{wavelengths}: fix them in the band table"
        )
    return [int(p) for p in picked if p is not None]


def preview_modes(image: RasterImage) -> list[str]:
    """The previews `image` can show, best first (composites, then each band alone)."""
    modes: list[str] = []
    for name in COMPOSITES:
        try:
            composite_bands(image, name)
        except ValueError:
            continue
        modes.append(name)
    sar = _sar_indices(image)
    if "VV" in sar and "VH" in sar:
        modes.insert(0, SAR_COMPOSITE)
    if not modes and image.data.shape[0] >= 3:
        modes.append(FIRST_THREE)
    modes.extend(SINGLE_BAND_PREFIX + name for name in image.band_names)
    return modes


def stretch(band: np.ndarray, percentiles: tuple[float, float] = STRETCH_PERCENTILES) -> np.ndarray:
    """(H, W) float -> (H, W) uint8 with a percentile stretch over finite values (NaN -> 0)."""
    finite = band[np.isfinite(band)]
    if finite.size == 0:
        return np.zeros(band.shape, dtype=np.uint8)
    lo, hi = np.percentile(finite, percentiles)
    if hi <= lo:
        hi = lo + 1.0
    scaled = (np.nan_to_num(band, nan=lo) - lo) / (hi - lo) * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def render_preview(image: RasterImage, mode: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 picture of `image` in `mode` (default: the first of `preview_modes`)."""
    mode = mode or preview_modes(image)[0]
    bands = composite_bands(image, mode)
    data = image.data
    if len(bands) == 1:
        grey = stretch(data[bands[0]])
        rgb = np.stack([grey, grey, grey], axis=-1)
    elif bands[2] == -1:  # SAR: VV, VH and their ratio in dB (VV-VH): water dark, forest green
        vv, vh = data[bands[0]], data[bands[1]]
        rgb = np.stack([stretch(vv), stretch(vh), stretch(vv - vh)], axis=-1)
    else:
        rgb = np.stack([stretch(data[b]) for b in bands], axis=-1)
    rgb[~image.valid_mask] = NODATA_RGB
    return np.ascontiguousarray(rgb)
