"""Previews pick the right bands for true/false colour and SAR, and show nodata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skyeye.io.raster import RasterImage, read_raster
from skyeye.render.previews import (
    NODATA_RGB,
    SAR_COMPOSITE,
    composite_bands,
    preview_modes,
    render_preview,
    stretch,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
S2, S1, NAIP = (
    EXAMPLES / f for f in ("sentinel2_berlin_l1c.tif", "sentinel1_vv_vh.tif", "naip_rgbn.tif")
)


def test_sentinel2_true_and_false_colour_bands() -> None:
    image = read_raster(S2, max_size=32)
    names = image.band_names
    picked = composite_bands(image, "true colour (red, green, blue)")
    assert [names[i] for i in picked] == ["B04", "B03", "B02"]
    picked = composite_bands(image, "false colour (NIR, red, green)")
    assert [names[i] for i in picked] == ["B08", "B04", "B03"]
    picked = composite_bands(image, "SWIR (SWIR2, NIR, red)")
    assert [names[i] for i in picked] == ["B12", "B8A", "B04"]
    modes = preview_modes(image)
    assert modes[0].startswith("true colour") and "band: B8A" in modes
    rgb = render_preview(image)
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8


def test_naip_false_colour_uses_its_nir_band() -> None:
    image = read_raster(NAIP, max_size=32)
    picked = composite_bands(image, "false colour (NIR, red, green)")
    assert [image.band_names[i] for i in picked] == ["NIR", "R", "G"]


def test_sentinel1_gets_the_sar_composite_first() -> None:
    image = read_raster(S1)  # VV, VH in dB, no wavelengths (SAR)
    assert preview_modes(image)[0] == SAR_COMPOSITE
    rgb = render_preview(image)
    assert rgb.shape == (120, 120, 3)
    with pytest.raises(ValueError, match="true colour needs bands near"):
        composite_bands(image, "true colour (red, green, blue)")


def test_unknown_bands_fall_back_and_nodata_is_grey() -> None:
    data = np.random.default_rng(0).uniform(0, 100, (5, 8, 8)).astype(np.float32)
    data[:, 0, 0] = np.nan
    image = RasterImage(data=data, band_names=[f"band_{i}" for i in range(1, 6)])
    modes = preview_modes(image)
    assert modes[0] == "first three bands" and len(modes) == 6
    rgb = render_preview(image)
    assert tuple(rgb[0, 0]) == NODATA_RGB
    grey = render_preview(image, "band: band_5")
    assert (grey[..., 0] == grey[..., 1]).all()


def test_stretch_clips_to_percentiles() -> None:
    band = np.arange(100, dtype=np.float32).reshape(10, 10)
    out = stretch(band)
    assert out.min() == 0 and out.max() == 255
    assert stretch(np.full((3, 3), np.nan, dtype=np.float32)).max() == 0
