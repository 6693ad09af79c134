"""SkyEyeImageProcessor: shapes, value ranges, nodata handling, errors and config round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from skyeye.io.raster import RasterImage, read_raster
from skyeye.processing.image_processor import SkyEyeImageProcessor

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
FIX = REPO / "tests" / "fixtures" / "io"


def test_mixed_band_counts_give_lists_of_tensors():
    proc = SkyEyeImageProcessor(image_size=16, sar_wavelength=5.405)
    images = [
        read_raster(EXAMPLES / "sentinel2_berlin_l1c.tif", max_size=64),
        read_raster(EXAMPLES / "sentinel1_vv_vh.tif"),
        read_raster(FIX / "rgb.png"),
    ]
    out = proc(images, return_tensors="pt")
    assert [tuple(p.shape) for p in out["pixel_values"]] == [(13, 16, 16), (2, 16, 16), (3, 16, 16)]
    assert [tuple(w.shape) for w in out["wavelengths"]] == [(13,), (2,), (3,)]
    assert all(p.dtype == torch.float32 for p in out["pixel_values"])
    assert out["wavelengths"][1].tolist() == pytest.approx([5.405, 5.405])
    assert out["wavelengths"][0][8].item() == pytest.approx(0.865)
    for p in out["pixel_values"]:
        assert p.min() >= -1.0 and p.max() <= 1.0  # (v/255 - 0.5)/0.5 of clipped 0..255


def test_uint8_identity_scaling_matches_the_dofa_clip_formula():
    proc = SkyEyeImageProcessor(image_size=4, value_scaling="uint8")
    arr = np.stack([np.full((4, 4), v, np.float32) for v in (0.0, 127.5, 255.0)])
    pv = proc.preprocess_array(arr, [0.665, 0.56, 0.49])["pixel_values"][0]
    assert pv[:, 0, 0].tolist() == pytest.approx([-1.0, 0.0, 1.0])


def test_reflectance_stretch_and_auto_scaling_per_sensor():
    proc = SkyEyeImageProcessor(image_size=2)
    data = np.stack([np.full((2, 2), v, np.float32) for v in (0.0, 1500.0, 3000.0, 9000.0)])
    im = RasterImage(
        data=data,
        band_names=["B02", "B03", "B04", "B08"],
        sensor="sentinel-2",
        wavelengths=[0.49, 0.56, 0.665, 0.842],
    )
    pv = proc(im)["pixel_values"][0][:, 0, 0]
    # reflectance 0, 0.15, 0.3 (= 255), 0.9 (clipped) -> -1, 0, 1, 1
    assert pv.tolist() == pytest.approx([-1.0, 0.0, 1.0, 1.0], abs=1e-6)


def test_auto_reads_0_1_reflectance_of_an_unknown_sensor_as_reflectance_not_per_band():
    """A float GeoTIFF of Landsat TOA reflectance (no sensor known) keeps its band ratios: the
    same pixels as the x10000 integers of a Sentinel-2 product, not a per-band stretch."""
    rng = np.random.default_rng(0)
    refl = rng.uniform(0.02, 0.45, size=(4, 8, 8)).astype(np.float32)
    refl[3] *= 0.2  # a dark NIR band (water): a per-band stretch would make it bright
    waves = [0.49, 0.56, 0.665, 0.842]
    proc = SkyEyeImageProcessor(image_size=8)
    unknown = RasterImage(data=refl, band_names=["b1", "b2", "b3", "b4"], wavelengths=waves)
    s2 = RasterImage(
        data=refl * 10000.0,
        band_names=["B02", "B03", "B04", "B08"],
        sensor="sentinel-2",
        wavelengths=waves,
    )
    assert proc.scaling_for(None, refl) == "reflectance"
    assert proc.scaling_for("landsat-8", refl) == "reflectance"
    torch.testing.assert_close(proc(unknown)["pixel_values"][0], proc(s2)["pixel_values"][0])
    # Digital numbers and 8-bit values are not reflectance: they keep the per-band stretch.
    assert proc.scaling_for(None, refl * 10000.0) == "minmax"
    assert proc.scaling_for("landsat-8", (refl * 255).round()) == "minmax"
    assert proc.scaling_for(None, np.full((1, 4, 4), np.nan, np.float32)) == "minmax"


def test_auto_reads_a_sentinel2_file_already_in_0_1_reflectance_as_reflectance():
    """A Sentinel-2 export divided by 10000 (float reflectance, e.g. the UKIS scene) is not
    divided again: the same pixels as the product's x10000 integers, not a black image."""
    rng = np.random.default_rng(1)
    refl = rng.uniform(0.02, 0.45, size=(4, 8, 8)).astype(np.float32)
    names, waves = ["B02", "B03", "B04", "B08"], [0.49, 0.56, 0.665, 0.842]
    proc = SkyEyeImageProcessor(image_size=8)
    ints = RasterImage(
        data=refl * 10000.0, band_names=names, sensor="sentinel-2", wavelengths=waves
    )
    floats = RasterImage(data=refl, band_names=names, sensor="sentinel-2", wavelengths=waves)
    assert proc.scaling_for("sentinel-2", refl * 10000.0) == "reflectance_10000"
    assert proc.scaling_for("sentinel-2", refl) == "reflectance"
    assert proc.scaling_depends_on_values("sentinel-2")
    torch.testing.assert_close(proc(floats)["pixel_values"][0], proc(ints)["pixel_values"][0])
    assert float(proc(floats)["pixel_values"][0].mean()) > -0.5  # not the black image (-1)
    # An explicit scaling is kept as given.
    fixed = SkyEyeImageProcessor(image_size=8, value_scaling="reflectance_10000")
    assert fixed.scaling_for("sentinel-2", refl) == "reflectance_10000"
    assert not fixed.scaling_depends_on_values("sentinel-2")


def test_sar_db_scaling():
    proc = SkyEyeImageProcessor(image_size=2, sar_wavelength=3.75)
    data = np.stack([np.full((2, 2), -25.0, np.float32), np.full((2, 2), -12.5, np.float32)])
    im = RasterImage(data=data, band_names=["VV", "VH"], sensor="sentinel-1")
    out = proc(im)
    assert out["pixel_values"][0][:, 0, 0].tolist() == pytest.approx([-1.0, 0.0], abs=1e-6)
    assert out["wavelengths"][0].tolist() == pytest.approx([3.75, 3.75])


def test_minmax_stretch_is_per_band_percentiles():
    proc = SkyEyeImageProcessor(image_size=10, value_scaling="minmax")
    ramp = np.linspace(0, 1000, 100, dtype=np.float32).reshape(10, 10)
    arr = np.stack([ramp, ramp * 50 + 7])
    pv = proc.preprocess_array(arr, [0.5, 0.6])["pixel_values"][0]
    torch.testing.assert_close(pv[0], pv[1])  # same shape of values, different units
    assert pv.min().item() == -1.0 and pv.max().item() == 1.0


def test_nodata_is_filled_with_the_mean_after_normalisation():
    proc = SkyEyeImageProcessor(image_size=8, value_scaling="uint8")
    arr = np.full((1, 8, 8), 255.0, np.float32)
    arr[:, :4, :] = np.nan
    pv = proc.preprocess_array(arr, [0.56])["pixel_values"][0]
    assert torch.all(pv[:, :3] == 0.0)  # nodata -> 0 = the mean
    assert torch.all(pv[:, 5:] == 1.0)  # valid pixels are not darkened by the nodata next door
    assert torch.isfinite(pv).all()


def test_rgba_nodata_from_a_real_file_ends_up_zero():
    proc = SkyEyeImageProcessor(image_size=32)
    im = read_raster(FIX / "rgba.png")
    pv = proc(im)["pixel_values"][0]
    assert pv.shape == (3, 32, 32)
    assert torch.all(pv[:, :6, :6] == 0.0)


def test_nan_only_image_is_refused():
    proc = SkyEyeImageProcessor(image_size=8)
    with pytest.raises(ValueError, match="every pixel is NaN"):
        proc.preprocess_array(np.full((2, 4, 4), np.nan, np.float32), [0.5, 0.6])


def test_missing_wavelengths_say_how_to_fix_it():
    proc = SkyEyeImageProcessor(image_size=8)
    im = read_raster(FIX / "s2_13band_nodesc.tif")
    with pytest.raises(ValueError, match="--wavelengths.*sensor"):
        proc(im)
    with pytest.raises(ValueError, match="--wavelengths"):
        proc.preprocess_array(np.ones((3, 4, 4), np.float32), None)


def test_sar_without_placeholder_is_refused():
    proc = SkyEyeImageProcessor(image_size=8)
    with pytest.raises(ValueError, match="sar_wavelength"):
        proc(read_raster(EXAMPLES / "sentinel1_vv_vh.tif"))


def test_checkpoint_sar_placeholder_overrides_the_file():
    proc = SkyEyeImageProcessor(image_size=8, sar_wavelength=5.405)
    im = read_raster(EXAMPLES / "sentinel1_vv_vh.tif", sar_wavelength=3.75)
    assert proc(im)["wavelengths"][0].tolist() == pytest.approx([5.405, 5.405])


def test_wavelength_count_mismatch():
    proc = SkyEyeImageProcessor(image_size=8)
    with pytest.raises(ValueError, match="1 wavelengths for 2 bands"):
        proc.preprocess_array(np.ones((2, 4, 4), np.float32), [0.5])


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="value_scaling 'log'"):
        SkyEyeImageProcessor(value_scaling="log")
    with pytest.raises(ValueError, match="image_size"):
        SkyEyeImageProcessor(image_size=0)


def test_save_and_load_round_trip(tmp_path):
    proc = SkyEyeImageProcessor(
        image_size=384,
        value_scaling="reflectance_10000",
        sar_wavelength=5.405,
        reflectance_max=0.25,
    )
    proc.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert cfg["image_size"] == 384 and cfg["sar_wavelength"] == 5.405
    assert cfg["image_processor_type"] == "SkyEyeImageProcessor"
    loaded = SkyEyeImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == proc.to_dict()
    im = read_raster(EXAMPLES / "sentinel2_berlin_l1c.tif", max_size=64)
    torch.testing.assert_close(loaded(im)["pixel_values"][0], proc(im)["pixel_values"][0])


def test_real_scene_output_keeps_contrast():
    proc = SkyEyeImageProcessor(image_size=64)
    pv = proc(read_raster(EXAMPLES / "sentinel2_berlin_l1c.tif"))["pixel_values"][0]
    nir, red = pv[7], pv[3]
    assert nir.std() > 0.05 and red.std() > 0.02  # water and land stay distinguishable
    assert (nir > red).float().mean() > 0.5  # vegetation/soil: NIR above red on most pixels
