"""Every way read_raster can fail raises RasterReadError with a message naming the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from skyeye.io.raster import RasterReadError, read_raster

FIX = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "io"


def _write(path: Path, data: np.ndarray, **kw) -> Path:
    profile = dict(
        driver="GTiff",
        count=data.shape[0],
        height=data.shape[1],
        width=data.shape[2],
        dtype=data.dtype.name,
        crs="EPSG:32633",
        transform=Affine(10, 0, 0, 0, -10, 0),
    )
    profile.update(kw)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def test_is_a_value_error():
    assert issubclass(RasterReadError, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(RasterReadError, match="no such file"):
        read_raster(tmp_path / "nope.tif")


def test_empty_file(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(RasterReadError, match="empty"):
        read_raster(tmp_path / "empty.tif")


@pytest.mark.parametrize("name", ["broken.tif", "broken.png", "broken.jp2"])
def test_corrupt_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"this is not a raster at all" * 10)
    with pytest.raises(RasterReadError, match="(not a readable|cannot read)"):
        read_raster(tmp_path / name)


def test_truncated_geotiff(tmp_path):
    good = (FIX / "s2_13band_nodesc.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(good[: len(good) // 2])
    with pytest.raises(RasterReadError):
        read_raster(tmp_path / "cut.tif")


def test_wavelength_count_mismatch_names_both_counts():
    with pytest.raises(RasterReadError, match=r"3 wavelengths for 4 bands"):
        read_raster(FIX / "s2_4band.tif", wavelengths=[0.49, 0.56, 0.665])


def test_band_name_count_mismatch():
    with pytest.raises(RasterReadError, match=r"2 band names for 4 bands"):
        read_raster(FIX / "s2_4band.tif", band_names=["B02", "B03"])


def test_sensor_with_other_band_count_asks_for_band_names():
    with pytest.raises(RasterReadError, match="band_names"):
        read_raster(FIX / "rgb.png", sensor="sentinel-2")


def test_unknown_sensor():
    with pytest.raises(RasterReadError, match="unknown sensor 'sentinel-3'"):
        read_raster(FIX / "rgb.png", sensor="sentinel-3")


def test_all_nodata(tmp_path):
    path = _write(tmp_path / "zeros.tif", np.zeros((2, 8, 8), np.uint16), nodata=0)
    with pytest.raises(RasterReadError, match="every pixel is nodata"):
        read_raster(path)


def test_all_nan(tmp_path):
    path = _write(tmp_path / "nan.tif", np.full((1, 8, 8), np.nan, np.float32))
    with pytest.raises(RasterReadError, match="every pixel is nodata/NaN"):
        read_raster(path)


def test_complex_dtype(tmp_path):
    path = _write(tmp_path / "slc.tif", (np.ones((1, 8, 8)) * (1 + 2j)).astype(np.complex64))
    with pytest.raises(RasterReadError, match="complex64 is not supported"):
        read_raster(path)


def test_too_large_without_max_size_says_pass_max_size():
    with pytest.raises(RasterReadError, match="pass max_size"):
        read_raster(FIX / "s2_4band.tif", max_pixels=100)
    assert read_raster(FIX / "s2_4band.tif", max_pixels=100, max_size=10).data.shape == (4, 8, 10)


def test_band_file_without_band_suffix(tmp_path):
    shutil.copy(FIX / "s2_bands" / "T33UUU_20170216T102101_B02.tif", tmp_path / "scene.tif")
    with pytest.raises(RasterReadError, match="cannot tell the band from the file name"):
        read_raster([tmp_path / "scene.tif"])
    assert read_raster([tmp_path / "scene.tif"], band_names=["B02"]).sensor == "sentinel-2"


def test_band_names_anywhere_in_real_product_file_names(tmp_path):
    from skyeye.io.image import band_name_from_filename

    assert band_name_from_filename("preview/B01.jp2") == "B01"  # Sentinel-2 tiles on AWS
    assert band_name_from_filename("LC80130312015295LGN00_B1_toa.tif") == "B1"
    assert band_name_from_filename("T33UUU_20200101T100031_B02_10m.jp2") == "B02"  # L2A
    assert band_name_from_filename("LC08_L2SP_016037_20200101_02_T1_SR_B4.TIF") == "B4"
    assert band_name_from_filename("S1A_IW_GRDH_x_VV.tif") == "VV"
    assert band_name_from_filename("scene_final.tif") == "final"  # no band: the last suffix
    # A folder of such files reads (the last suffix, "toa", was every file's band before).
    folder = tmp_path / "LC80130312015295LGN00"
    folder.mkdir()
    for name in ("B3", "B4", "B5"):
        shutil.copy(
            FIX / "s2_bands" / "T33UUU_20170216T102101_B02.tif",
            folder / f"LC80130312015295LGN00_{name}_toa.tif",
        )
    image = read_raster(folder)
    assert image.band_names == ["B3", "B4", "B5"]
    assert image.wavelengths == pytest.approx([0.561, 0.655, 0.865])  # Landsat 8 (product ID)


def test_band_file_with_several_bands(tmp_path):
    folder = tmp_path / "bands"
    folder.mkdir()
    _write(folder / "scene_B02.tif", np.ones((2, 4, 4), np.uint16))
    with pytest.raises(RasterReadError, match="has 2 bands"):
        read_raster(folder)


def test_band_files_in_different_crs(tmp_path):
    _write(tmp_path / "s_B02.tif", np.ones((1, 4, 4), np.uint16))
    _write(tmp_path / "s_B03.tif", np.ones((1, 4, 4), np.uint16), crs="EPSG:32632")
    with pytest.raises(
        RasterReadError, match=r"different CRSs \(EPSG:32632: s_B03.tif; EPSG:32633"
    ):
        read_raster(tmp_path)


def test_band_files_some_without_georeference_are_named(tmp_path):
    # The shape of a real Sentinel-2 preview folder: some JP2s carry the tile's CRS, some none.
    _write(tmp_path / "s_B01.tif", np.ones((1, 4, 4), np.uint16))
    _write(tmp_path / "s_B02.tif", np.ones((1, 4, 4), np.uint16), crs=None, transform=None)
    with pytest.raises(RasterReadError, match=r"no georeference: s_B02.tif\).*not previews"):
        read_raster(tmp_path)


def test_files_of_a_product_folder_that_are_not_its_sensors_bands_are_left_out(tmp_path, caplog):
    shutil.copytree(FIX / "s2_bands", tmp_path / "b")
    bands = read_raster(tmp_path / "b", sensor="sentinel-2").band_names
    shutil.copy(
        FIX / "s2_bands" / "T33UUU_20170216T102101_B02.tif", tmp_path / "b" / "T33UUU_QA.tif"
    )
    with caplog.at_level("WARNING"):
        image = read_raster(tmp_path / "b", sensor="sentinel-2")
    assert image.band_names == bands  # a quality layer is not a band the model reads
    assert "['QA'] are not sentinel-2 bands: left out" in caplog.text
    # Without a sensor (given or named by a product ID) nothing is dropped: the error asks.
    from skyeye.processing.image_processor import SkyEyeImageProcessor

    unnamed = read_raster(tmp_path / "b")
    with pytest.raises(ValueError, match=r"missing wavelengths for bands \[.*'QA'\]"):
        SkyEyeImageProcessor()([unnamed])


def test_folder_without_rasters(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(RasterReadError, match="no band files"):
        read_raster(tmp_path)


@pytest.mark.parametrize(
    "rle, why",
    [
        ({"size": [8, 8], "counts": "zzzzzzzzzzzzzzzzzzzzzz"}, "cut off or corrupt|not a COCO"),
        ({"size": [8, 8], "counts": "0" + "\x7f" * 5}, "not a COCO RLE character"),
        ({"size": [8, 8], "counts": "04400N2"}, "cover"),
        ({"size": [8, 8], "counts": [3, -1, 62]}, "non-negative"),
        ({"size": [8, 8], "counts": [3, 10]}, "cover 13 pixels"),
        ({"size": [10**30, 8], "counts": "0"}, "outside"),
        (
            {"size": [8, 8], "counts": "<image>" * 50},
            "cut off or corrupt|not a COCO|negative|cover",
        ),
    ],
)
def test_corrupt_rle_is_a_value_error_not_a_crash(rle, why):
    # Issue 15 fuzz: pycocotools trusts its input; a damaged mask killed the converter.
    from skyeye.io.rle import decode_rle

    with pytest.raises(ValueError, match=why):
        decode_rle(rle)
