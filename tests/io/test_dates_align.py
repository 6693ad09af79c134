"""Acquisition dates (tags, product names, STAC, --date) and `align_to_first`."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from skyeye.errors import AlignmentError, NoOverlapError, RasterReadError
from skyeye.io import read_raster
from skyeye.io.align import align_to_first
from skyeye.io.dates import date_from_name, date_from_tags, date_label, parse_user_date
from skyeye.io.image import RasterImage

UTM32 = CRS.from_epsg(32632)


def _tif(path, data, tags=None, transform=None, crs=UTM32):
    c, h, w = data.shape
    profile = dict(driver="GTiff", height=h, width=w, count=c, dtype="float32", nodata=np.nan)
    if transform is not None:
        profile.update(transform=transform, crs=crs)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
        if tags:
            dst.update_tags(**tags)
    return path


@pytest.mark.parametrize(
    ("name", "date"),
    [
        (
            "S2A_MSIL1C_20170216T102101_N0204_R065_T32UNE_20170216T102101.SAFE",
            "2017-02-16T10:21:01",
        ),
        ("T32TPP_20180211T102141_B02.tif", "2018-02-11T10:21:41"),
        ("LC08_L1TP_044034_20200815_20200822_02_T1_B4.TIF", "2020-08-15"),
        ("LE07_L2SP_044034_20000105_20200917_02_T1.tif", "2000-01-05"),
        ("LC80440342014100LGN00_B4.TIF", "2014-04-10"),
        (
            "S1A_IW_GRDH_1SDV_20200101T054012_20200101T054037_030599_038185_1234.tif",
            "2020-01-01T05:40:12",
        ),
        # the old Sentinel-2 tile name's date is when the tile was processed, not sensed
        ("S2A_OPER_MSI_L1C_TL_EPA__20160809T015434_A000162_T32TPP_B08.tif", None),
        ("m_4709963_se_14_1_20200831.tif", "2020-08-31"),  # NAIP: the source image's date
        ("m_3807504_ne_18_060_20181104.tif", "2018-11-04"),
        ("scene_2020.tif", None),
        ("T32TPP_20181341T102141_B02.tif", None),  # no 41st of the 13th month
    ],
)
def test_dates_in_product_names(name, date):
    assert date_from_name(name) == date


def test_acquisition_tags_are_read_and_the_files_write_time_is_not():
    assert date_from_tags({"TIFFTAG_DATETIME": "2023:01:02 03:04:05"}) is None
    assert date_from_tags({"ACQUISITION_DATE": "2017-02-16"}) == "2017-02-16"
    assert date_from_tags({"date_acquired": "2020-08-15"}) == "2020-08-15"
    assert (
        date_from_tags({"DATATAKE_1_DATATAKE_SENSING_START": "2017-02-16T10:21:01.026Z"})
        == "2017-02-16T10:21:01"
    )
    assert date_from_tags({"SENSING_TIME": "not a date", "datetime": "20190704"}) == "2019-07-04"


def test_read_raster_dates_from_tags_then_name_else_none(tmp_path):
    data = np.ones((1, 4, 4))
    tagged = _tif(tmp_path / "a.tif", data, {"ACQUISITION_DATE": "2018-05-01"})
    written = _tif(tmp_path / "b.tif", data, {"TIFFTAG_DATETIME": "2024:01:01 00:00:00"})
    named = _tif(tmp_path / "T32TPP_20180211T102141_B02.tif", data)
    assert read_raster(tagged).datetime == "2018-05-01"
    assert read_raster(written).datetime is None
    assert read_raster(named).datetime == "2018-02-11T10:21:41"


def test_a_stac_items_datetime_wins_over_the_files_tags(tmp_path):
    _tif(tmp_path / "B04.tif", np.ones((1, 4, 4)), {"ACQUISITION_DATE": "2018-05-01"})
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "x",
        "geometry": None,
        "properties": {"datetime": "2020-06-01T10:00:00Z"},
        "assets": {
            "red": {
                "href": "B04.tif",
                "type": "image/tiff",
                "roles": ["data"],
                "eo:bands": [{"name": "B04", "common_name": "red", "center_wavelength": 0.665}],
            }
        },
        "links": [],
    }
    (tmp_path / "item.json").write_text(json.dumps(item))
    assert read_raster(tmp_path / "item.json").datetime == "2020-06-01T10:00:00Z"


def test_user_dates_are_iso_or_a_clear_error():
    assert parse_user_date("2018-05-01") == "2018-05-01"
    assert date_label("2018-05-01T10:00:00Z") == "2018-05-01"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_user_date("05/01/2018")


# ------------------------------------------------------------------------------ alignment
def _image(data, transform=None, crs=UTM32, path=None):
    return RasterImage(
        data=np.asarray(data, dtype=np.float32),
        band_names=[f"band_{i}" for i in range(len(data))],
        crs=crs if transform is not None else None,
        transform=transform,
        path=path,
    )


def test_a_shifted_image_is_warped_onto_the_first_grid_and_the_rest_masked(caplog):
    yy, xx = np.mgrid[0:20, 0:20].astype(np.float32)
    first = _image([xx + 100 * yy], from_origin(1000, 2000, 10, 10), path="a.tif")
    # the same field (value = x + 100 y of the first grid), on a grid 5 px to the east
    second = _image([xx + 5 + 100 * yy], from_origin(1050, 2000, 10, 10), path="b.tif")
    with caplog.at_level(logging.WARNING, logger="skyeye.io.align"):
        out = align_to_first([first, second])
    assert out.warped == [False, True]
    assert out.overlap == pytest.approx(15 / 20)
    assert out.partial and "75.0%" in caplog.text
    a, b = out.images[0].data[0], out.images[1].data[0]
    # the second image starts 5 px east of the first: the first 5 columns have no counterpart
    assert np.isnan(a[:, :5]).all() and np.isnan(b[:, :5]).all()
    assert np.isfinite(a[:, 5:]).all() and np.isfinite(b[:, 5:]).all()
    np.testing.assert_allclose(b[:, 5:], a[:, 5:], atol=1e-3)  # one field, on one grid
    assert out.images[1].transform == first.transform


def test_another_crs_is_reprojected():
    lonlat = CRS.from_epsg(4326)
    first = _image([np.ones((10, 10))], from_origin(500000, 5000100, 10, 10))
    bounds = rasterio.warp.transform_bounds(UTM32, lonlat, 500000, 5000000, 500100, 5000100)
    res = (bounds[2] - bounds[0]) / 10
    second = _image(
        [np.full((12, 12), 2.0)],
        from_origin(bounds[0] - res, bounds[3] + res, res, res),
        crs=lonlat,
    )
    out = align_to_first([first, second])
    assert out.warped[1] and out.overlap > 0.8
    assert np.nanmax(out.images[1].data) == pytest.approx(2.0)


def test_no_overlap_is_one_line_naming_both_images():
    first = _image([np.ones((10, 10))], from_origin(0, 100, 10, 10), path="before.tif")
    far = _image([np.ones((10, 10))], from_origin(10000, 100, 10, 10), path="after.tif")
    with pytest.raises(NoOverlapError) as err:
        align_to_first([first, far])
    message = str(err.value)
    assert isinstance(err.value, RasterReadError) and "\n" not in message
    assert "before.tif" in message and "after.tif" in message


def test_images_without_georeference_align_only_when_the_same_size():
    a, b = _image([np.ones((8, 8))], path="a.png"), _image([np.zeros((8, 8))], path="b.png")
    out = align_to_first([a, b])
    assert out.overlap == 1.0 and out.warped == [False, False]
    with pytest.raises(AlignmentError, match="georeference.*resample") as err:
        align_to_first([a, _image([np.ones((9, 8))], path="c.png")])
    assert "a.png" in str(err.value) and "c.png" in str(err.value)


def test_nodata_in_either_image_is_masked_in_both():
    a = _image([np.ones((4, 4))])
    b_data = np.ones((1, 4, 4))
    b_data[0, 0, 0] = np.nan
    out = align_to_first([a, _image(b_data)])
    assert np.isnan(out.images[0].data[0, 0, 0]) and out.overlap == pytest.approx(15 / 16)
    assert np.isfinite(a.data).all()  # the input is not modified
