"""Band names as GEE, USGS and STAC write them, and wavelengths in the wrong unit (issue 15, item 7)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from skyeye.io.raster import read_raster
from skyeye.io.sensors import resolve_wavelengths, wavelengths_from_band_names

GEE_S2 = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
S2_WAVELENGTHS = [
    0.443,
    0.49,
    0.56,
    0.665,
    0.705,
    0.74,
    0.783,
    0.842,
    0.865,
    0.945,
    1.375,
    1.61,
    2.19,
]


def _geotiff(path, names: list[str]) -> str:
    data = np.random.default_rng(0).integers(0, 4000, size=(len(names), 16, 16)).astype("uint16")
    profile = dict(
        driver="GTiff", width=16, height=16, count=len(names), dtype="uint16",
        crs="EPSG:32633", transform=from_origin(500000, 5800000, 10, 10),
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
    return str(path)


def test_gee_sentinel2_band_names_are_sentinel2(tmp_path):
    image = read_raster(_geotiff(tmp_path / "s2_gee.tif", GEE_S2))
    assert image.sensor == "sentinel-2"
    assert image.wavelengths == pytest.approx(S2_WAVELENGTHS)


@pytest.mark.parametrize(
    "names",
    [
        [n.replace("B8A", "B8a") for n in GEE_S2],
        ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"],
    ],
    ids=["B8a", "zero-padded"],
)
def test_other_sentinel2_spellings(tmp_path, names):
    image = read_raster(_geotiff(tmp_path / "s2.tif", names))
    assert image.sensor == "sentinel-2"
    assert image.wavelengths == pytest.approx(S2_WAVELENGTHS)


def test_gee_sentinel2_subset_with_b8_is_sentinel2(tmp_path):
    image = read_raster(_geotiff(tmp_path / "s2_rgbn.tif", ["B2", "B3", "B4", "B8"]))
    assert image.sensor == "sentinel-2"
    assert image.wavelengths == pytest.approx([0.49, 0.56, 0.665, 0.842])


def test_landsat_collection2_names(tmp_path):
    names = ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7", "ST_B10"]
    image = read_raster(_geotiff(tmp_path / "l8_sr.tif", names))
    assert image.wavelengths == pytest.approx(
        [0.443, 0.482, 0.561, 0.655, 0.865, 1.609, 2.201, 10.895]
    )


TM_NAMES = ["B1", "B2", "B3", "B4", "B5", "B7"]


def test_b_numbered_landsat_bands_are_told_apart_by_the_product_id(tmp_path):
    # B1..B7 are Landsat 4-7 TM / ETM+ bands or Landsat 8-9 OLI bands: B4 is near-infrared on
    # one, red on the other. The product ID USGS puts in every file name says which.
    l5 = read_raster(_geotiff(tmp_path / "LT05_L2SP_044034_20060719_20200831_02_T1.tif", TM_NAMES))
    assert l5.sensor == "landsat-5"
    assert l5.wavelengths == pytest.approx([0.485, 0.56, 0.66, 0.83, 1.65, 2.215])
    l7 = read_raster(_geotiff(tmp_path / "LE07_L1TP_231065_20000601_20200918_02_T1.tif", TM_NAMES))
    assert l7.sensor == "landsat-7" and l7.wavelengths[3] == pytest.approx(0.835)
    oli = ["B2", "B3", "B4", "B5"]
    l8 = read_raster(_geotiff(tmp_path / "LC08_L1TP_016037_20170813_20170814_01_RT.tif", oli))
    assert l8.sensor == "landsat-8"
    assert l8.wavelengths == pytest.approx([0.482, 0.561, 0.655, 0.865])
    old_id = read_raster(_geotiff(tmp_path / "LC80130312015295LGN00_toa.tif", oli))
    assert old_id.sensor == "landsat-8"
    # Collection 2 names in a stacked file: the ID decides them too (SR_B4 is NIR on Landsat 5).
    sr = ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7"]
    l5_sr = read_raster(_geotiff(tmp_path / "LT05_L2SP_044034_20060719_20200831_02_T1_SR.tif", sr))
    assert l5_sr.sensor == "landsat-5" and l5_sr.wavelengths[3] == pytest.approx(0.83)
    # One band per file in a product folder (USGS's layout): the folder's ID counts too.
    folder = tmp_path / "LT05_L2SP_044034_20060719_20200831_02_T1"
    folder.mkdir()
    for name in ("SR_B3", "SR_B4"):
        _geotiff(folder / f"LT05_L2SP_044034_20060719_20200831_02_T1_{name}.TIF", [name])
    assert read_raster(str(folder)).wavelengths == pytest.approx([0.66, 0.83])


def test_b_numbered_bands_without_a_product_id_get_no_guessed_wavelengths(tmp_path):
    from skyeye.processing.image_processor import SkyEyeImageProcessor

    path = _geotiff(tmp_path / "stack.tif", TM_NAMES)
    plain = read_raster(path)
    assert plain.sensor is None and plain.wavelengths is None  # not Landsat 8's, silently
    with pytest.raises(ValueError, match=r"bands of landsat-5, landsat-7, landsat-8, landsat-9, "
                       r"at different wavelengths\): pass --wavelengths .*--sensor, one of landsat-5, "):  # fmt: skip
        SkyEyeImageProcessor()([plain])
    given = read_raster(path, sensor="landsat-7")
    assert given.wavelengths == pytest.approx([0.483, 0.56, 0.662, 0.835, 1.648, 2.206])
    # Names only one sensor has still say it: B9 / B10 are Landsat 8-9's alone.
    assert read_raster(_geotiff(tmp_path / "tirs.tif", ["B4", "B10"])).wavelengths == (
        pytest.approx([0.655, 10.895])
    )


def test_stac_common_names(tmp_path):
    names = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"]
    image = read_raster(_geotiff(tmp_path / "stac.tif", names))
    assert image.wavelengths is not None
    assert image.wavelengths == pytest.approx(
        [0.443, 0.49, 0.56, 0.665, 0.865, 1.61, 2.19], abs=0.02
    )
    s2_l2a = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
              "nir09", "swir16", "swir22"]  # fmt: skip
    assert read_raster(_geotiff(tmp_path / "l2a.tif", s2_l2a)).sensor == "sentinel-2"


def test_generic_names_still_pick_nothing():
    assert wavelengths_from_band_names(["band_1", "band_2"]) == (None, None)


def test_nanometres_are_refused_with_the_micrometre_values():
    with pytest.raises(ValueError, match=r"nanometres.*0\.665,0\.56"):
        resolve_wavelengths(["a", "b"], wavelengths=[665, 560])


def test_absurd_wavelength_names_the_allowed_range():
    with pytest.raises(ValueError, match=r"between 0\.3 and 30 µm"):
        resolve_wavelengths(["a"], wavelengths=[1e9])


def test_chat_cli_refuses_nanometres_before_loading_anything(capsys):
    from skyeye.chat.terminal import main, parse_wavelengths

    with pytest.raises(argparse.ArgumentTypeError, match=r"nanometres.*0\.665,0\.56"):
        parse_wavelengths("665,560")
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "/nonexistent", "--wavelengths", "1e9", "--prompt", "hi"])
    assert exit_info.value.code == 2
    assert "between 0.3 and 30 µm" in capsys.readouterr().err


def test_band_files_of_no_known_sensor_are_in_numeric_order(tmp_path):
    # --wavelengths are typed in band order: band10 comes after band2, not after band1.
    folder = tmp_path / "scene"
    folder.mkdir()
    for n in (10, 1, 2):
        _geotiff(folder / f"scene_band{n}.tif", [f"band{n}"])
    image = read_raster(str(folder), wavelengths=[0.49, 0.56, 0.665])
    assert image.band_names == ["band1", "band2", "band10"]
    assert image.wavelengths == pytest.approx([0.49, 0.56, 0.665])
