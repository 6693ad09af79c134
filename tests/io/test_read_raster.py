"""read_raster on the bundled examples and the generated fixtures (tests/fixtures/make_io_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from skyeye.io.raster import RasterImage, RasterReadError, read_raster

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
FIX = REPO / "tests" / "fixtures" / "io"
S2_WAVES = [0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.865, 0.945, 1.375, 1.61, 2.19]


def test_sentinel2_example_keeps_georeference_and_band_metadata():
    im = read_raster(EXAMPLES / "sentinel2_berlin_l1c.tif")
    assert isinstance(im, RasterImage)
    assert im.data.shape == (13, 512, 512) and im.data.dtype == np.float32
    assert im.band_names == [
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B8A",
        "B09",
        "B10",
        "B11",
        "B12",
    ]
    assert im.sensor == "sentinel-2"
    assert im.wavelengths == S2_WAVES
    assert im.crs.to_epsg() == 32633
    assert im.transform == Affine(10.0, 0.0, 340240.0, 0.0, -10.0, 5820760.0)
    assert im.nodata is None and im.source_shape == (512, 512)
    with rasterio.open(EXAMPLES / "sentinel2_berlin_l1c.tif") as src:
        np.testing.assert_array_equal(im.data, src.read().astype(np.float32))
    # Real L1C: TOA reflectance x10000 of land and water, and NIR (B08) brighter than red on land.
    assert 300 < np.median(im.data[3]) < 3000
    assert np.median(im.data[7]) > np.median(im.data[3])


def test_sentinel1_example_needs_the_checkpoint_placeholder_for_wavelengths():
    im = read_raster(EXAMPLES / "sentinel1_vv_vh.tif")
    assert im.band_names == ["VV", "VH"] and im.sensor == "sentinel-1"
    assert im.wavelengths is None  # SAR: left to the processor's sar_wavelength
    assert -45 < np.nanmin(im.data) and np.nanmax(im.data) < 10  # backscatter in dB
    assert np.nanmean(im.data[1]) < np.nanmean(im.data[0])  # VH is weaker than VV
    im2 = read_raster(EXAMPLES / "sentinel1_vv_vh.tif", sar_wavelength=5.405)
    assert im2.wavelengths == [5.405, 5.405]


def test_naip_example_is_rgb_nir_with_nodata_kept():
    im = read_raster(EXAMPLES / "naip_rgbn.tif")
    assert im.band_names == ["R", "G", "B", "NIR"] and im.sensor == "naip"
    assert im.wavelengths == [0.64, 0.56, 0.48, 0.81]
    assert im.nodata == 0 and im.crs.to_epsg() == 26914
    assert im.data.shape == (4, 512, 512)


def test_png_is_rgb_with_rgb_wavelengths():
    im = read_raster(FIX / "rgb.png")
    assert im.data.shape == (3, 32, 40)
    assert im.band_names == ["R", "G", "B"] and im.sensor == "rgb"
    assert im.wavelengths == [0.665, 0.56, 0.49]
    assert im.crs is None and im.transform is None
    assert 0 <= im.data.min() and im.data.max() <= 255


def test_jpg_decodes_close_to_the_png():
    jpg = read_raster(FIX / "rgb.jpg").data
    png = read_raster(FIX / "rgb.png").data
    assert jpg.shape == png.shape
    assert np.abs(jpg - png).mean() < 6  # lossy, but the same picture


def test_grayscale_png_becomes_three_equal_bands():
    im = read_raster(FIX / "gray.png")
    assert im.data.shape == (3, 32, 40) and im.sensor == "rgb"
    np.testing.assert_array_equal(im.data[0], im.data[2])


def test_rgba_png_transparent_pixels_are_nodata():
    im = read_raster(FIX / "rgba.png")
    assert im.data.shape == (3, 32, 40)
    assert not im.valid_mask[:8, :10].any()
    assert im.valid_mask[8:, :].all() and im.valid_mask[:, 10:].all()


def test_four_band_geotiff_nodata_becomes_nan():
    im = read_raster(FIX / "s2_4band.tif")
    assert im.band_names == ["B02", "B03", "B04", "B08"]
    assert im.wavelengths == [0.49, 0.56, 0.665, 0.842]
    assert im.nodata == 0
    assert np.isnan(im.data[:, :4, :6]).all()
    assert im.valid_mask.sum() == 32 * 40 - 4 * 6


def test_thirteen_bands_without_descriptions_take_the_sensor_band_order():
    im = read_raster(FIX / "s2_13band_nodesc.tif", sensor="sentinel-2")
    assert im.band_names[8] == "B8A" and im.wavelengths == S2_WAVES
    plain = read_raster(FIX / "s2_13band_nodesc.tif")
    assert plain.sensor is None and plain.wavelengths is None  # no guessing from the band count
    assert plain.band_names == [f"band_{i}" for i in range(1, 14)]


def test_explicit_band_names_and_wavelengths_override_the_file():
    im = read_raster(FIX / "s2_4band.tif", wavelengths=[0.5, 0.6, 0.7, 0.8])
    assert im.wavelengths == [0.5, 0.6, 0.7, 0.8]
    im = read_raster(
        FIX / "s2_13band_nodesc.tif", band_names=[f"B{i}" for i in range(1, 12)] + ["B12", "B13"]
    )
    assert im.band_names[0] == "B1"


def test_band_per_file_folder_is_resampled_to_the_finest_grid_in_sensor_order():
    im = read_raster(FIX / "s2_bands")
    assert im.band_names == ["B02", "B03", "B04", "B05", "B08", "B11"]
    assert im.wavelengths == [0.49, 0.56, 0.665, 0.705, 0.842, 1.61]
    assert im.data.shape == (6, 32, 40)
    with rasterio.open(FIX / "s2_bands" / "T33UUU_20170216T102101_B02.tif") as src:
        assert im.transform == src.transform and im.crs == src.crs
        np.testing.assert_array_equal(im.data[0], src.read(1).astype(np.float32))
    with rasterio.open(FIX / "s2_bands" / "T33UUU_20170216T102101_B11.tif") as src:
        coarse = src.read(1).astype(np.float32)
    # The upsampled 20 m band keeps its 2x2-block means (bilinear, centre-aligned).
    blocks = im.data[5].reshape(16, 2, 20, 2).mean(axis=(1, 3))
    assert np.abs(blocks[2:-2, 2:-2] - coarse[2:-2, 2:-2]).mean() < 0.05 * coarse.mean()
    assert np.isfinite(im.data).all()


def test_band_file_list_and_folder_agree():
    files = sorted((FIX / "s2_bands").glob("*.tif"), reverse=True)
    from_list = read_raster(files)
    from_folder = read_raster(FIX / "s2_bands")
    assert from_list.band_names == from_folder.band_names
    np.testing.assert_array_equal(from_list.data, from_folder.data)


def test_jp2_band_files_read_losslessly():
    im = read_raster(FIX / "s2_jp2")
    assert im.band_names == ["B04", "B8A"] and im.data.shape == (2, 32, 40)
    with rasterio.open(EXAMPLES / "sentinel2_berlin_l1c.tif") as src:
        b04 = src.read(4, window=rasterio.windows.Window(64, 64, 40, 32)).astype(np.float32)
    np.testing.assert_array_equal(im.data[0], b04)
    assert im.crs.to_epsg() == 32633


def test_decimated_read_keeps_corners_on_the_map():
    path = EXAMPLES / "sentinel2_berlin_l1c.tif"
    full = read_raster(path)
    small = read_raster(path, max_size=100)
    assert small.data.shape == (13, 100, 100) and small.source_shape == (512, 512)
    h, w = small.data.shape[1:]
    for (col, row), (fcol, frow) in (((0, 0), (0, 0)), ((w, h), (512, 512)), ((w, 0), (512, 0))):
        np.testing.assert_allclose(small.transform @ (col, row), full.transform @ (fcol, frow))
    assert small.crs == full.crs
    # Each decimated pixel summarises its footprint: the scene mean survives.
    np.testing.assert_allclose(small.data.mean(axis=(1, 2)), full.data.mean(axis=(1, 2)), rtol=0.02)


def test_non_square_decimation_keeps_aspect_and_footprint():
    im = read_raster(FIX / "s2_4band.tif", max_size=20)
    assert im.data.shape == (4, 16, 20)
    np.testing.assert_allclose(im.transform @ (20, 16), (340880 + 400, 5820120 - 320))
    assert np.isnan(im.data[:, 0, 0]).all()  # the nodata corner is still nodata


def test_max_size_never_upsamples_and_png_can_shrink():
    assert read_raster(FIX / "rgb.png", max_size=1000).data.shape == (3, 32, 40)
    assert read_raster(FIX / "rgba.png", max_size=20).data.shape == (3, 16, 20)
    assert read_raster(FIX / "rgb.jpg", max_size=10).data.shape == (3, 8, 10)


def test_band_files_with_other_footprints_are_warped_onto_the_grid(tmp_path):
    with rasterio.open(FIX / "s2_bands" / "T33UUU_20170216T102101_B02.tif") as src:
        profile, b02 = src.profile, src.read(1)
    (tmp_path / "s_B02.tif").write_bytes(
        (FIX / "s2_bands" / "T33UUU_20170216T102101_B02.tif").read_bytes()
    )
    # B03 covers only rows 8..23, cols 10..29 of the B02 grid.
    win = rasterio.windows.Window(10, 8, 20, 16)
    sub = dict(
        profile,
        width=20,
        height=16,
        transform=rasterio.windows.transform(win, profile["transform"]),
    )
    with rasterio.open(tmp_path / "s_B03.tif", "w", **sub) as dst:
        dst.write(b02[8:24, 10:30][None] + 1)
    im = read_raster(tmp_path)
    assert im.band_names == ["B02", "B03"] and im.data.shape == (2, 32, 40)
    np.testing.assert_array_equal(im.data[1, 8:24, 10:30], b02[8:24, 10:30] + 1)
    assert np.isnan(im.data[1, :8]).all() and np.isnan(im.data[1, :, :10]).all()
    assert im.valid_mask.sum() == 20 * 16


def test_list_of_multiband_files_stacks_their_bands_in_order():
    """ChatEarthNet ships a 9-band Sentinel-2 input as three RGB PNG triplets."""
    root = Path(__file__).resolve().parents[1] / "fixtures" / "instruct" / "chatearthnet" / "images"
    files = [
        root / "s2_rgb_images" / "s2_images" / "S2_0001.png",
        root / "s2_band_5_6_7_images" / "S2_0001.png",
        root / "s2_band_8_11_12_images" / "S2_0001.png",
    ]
    names = ["B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12"]
    waves = [0.665, 0.56, 0.49, 0.705, 0.74, 0.783, 0.842, 1.61, 2.19]
    image = read_raster(files, band_names=names, wavelengths=waves)
    assert image.data.shape[0] == 9
    assert image.band_names == names
    assert image.wavelengths == pytest.approx(waves)
    assert image.sensor == "rgb"  # 8-bit display PNGs keep the photo value scaling
    from PIL import Image

    second = np.asarray(Image.open(files[1]), dtype=np.float32)
    assert np.array_equal(image.data[3:6], np.moveaxis(second[..., :3], -1, 0))


def test_stacked_files_must_share_a_grid(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (9, 8)).save(tmp_path / "b.png")
    with pytest.raises(RasterReadError, match="different grids"):
        read_raster([tmp_path / "a.png", tmp_path / "b.png"])
