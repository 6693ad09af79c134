"""STAC items as raster sources: the committed example item, band assets, SAR, remote hrefs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from skyeye.errors import RasterReadError, StacError
from skyeye.io.raster import read_raster
from skyeye.io.stac import read_stac_item, read_stac_items

REPO = Path(__file__).resolve().parents[2]
ITEM = REPO / "examples" / "sentinel2_berlin_l1c.stac.json"
S2 = REPO / "examples" / "sentinel2_berlin_l1c.tif"
S1 = REPO / "examples" / "sentinel1_vv_vh.tif"


def _split(src_path: Path, folder: Path, names: list[str]) -> list[Path]:
    """Write bands 1..len(names) of src_path as single-band files named <name>.tif (no band
    suffix, so only the item can tell which band each file is)."""
    out = []
    with rasterio.open(src_path) as src:
        profile = {**src.profile, "count": 1}
        for i, name in enumerate(names, start=1):
            path = folder / f"{name.lower()}-file.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(i), 1)
            out.append(path)
    return out


def _item(assets: dict, **props) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "test-item",
        "geometry": None,
        "properties": {"datetime": "2020-01-02T03:04:05Z", **props},
        "links": [],
        "assets": assets,
    }


def test_committed_item_reads_like_its_geotiff_with_id_and_datetime():
    image = read_raster(ITEM, max_size=64)
    direct = read_raster(S2, max_size=64)
    np.testing.assert_array_equal(image.data, direct.data)
    assert image.band_names == direct.band_names and image.wavelengths == direct.wavelengths
    assert image.scene_id.startswith("S2A_MSIL1C_20170216T102101")
    assert image.datetime == "2017-02-16T10:21:01Z"
    assert image.path == str(ITEM) and image.crs == direct.crs


def test_single_band_assets_are_named_and_given_wavelengths_by_eo_bands(tmp_path):
    files = _split(S2, tmp_path, ["B02", "B03", "B04"])
    bands = [("blue", 0.49), ("green", 0.56), ("red", 0.665)]
    assets = {
        common: {
            "href": f.name,
            "type": "image/tiff; application=geotiff",
            "roles": ["data"],
            "eo:bands": [{"name": common, "common_name": common, "center_wavelength": w}],
        }
        for f, (common, w) in zip(files, bands, strict=True)
    }
    assets["thumbnail"] = {"href": "https://example.com/t.png", "roles": ["thumbnail"]}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(_item(assets)))
    image = read_raster(path, max_size=32)
    assert image.band_names == ["blue", "green", "red"]
    assert image.wavelengths == [0.49, 0.56, 0.665]
    assert image.datetime == "2020-01-02T03:04:05Z" and image.scene_id == "test-item"
    only_red = read_stac_item(path, bands=["red"])
    assert only_red.band_names == ["red"] and only_red.source == [files[2]]


def test_sar_assets_are_picked_by_polarisation(tmp_path):
    files = _split(S1, tmp_path, ["VV", "VH"])
    assets = {
        pol.lower(): {"href": f.as_uri(), "type": "image/tiff", "sar:polarizations": [pol]}
        for f, pol in zip(files, ["VV", "VH"], strict=True)
    }
    path = tmp_path / "s1.json"
    path.write_text(json.dumps(_item(assets)))
    scene = read_stac_item(path)
    assert scene.band_names == ["VV", "VH"] and scene.source == files
    image = read_raster(path, sar_wavelength=5.405)
    assert sorted(image.band_names) == ["VH", "VV"]


def test_remote_href_says_it_cannot_be_fetched(tmp_path):
    item = _item({"data": {"href": "https://example.com/scene.tif", "type": "image/tiff",
                           "eo:bands": [{"name": "B04"}, {"name": "B03"}]}})  # fmt: skip
    path = tmp_path / "remote.json"
    path.write_text(json.dumps(item))
    with pytest.raises(StacError, match="cannot fetch remote asset https://example.com/scene.tif"):
        read_raster(path)


def test_json_that_is_not_a_stac_item_is_a_read_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(RasterReadError, match="not a valid STAC Item"):
        read_raster(path)


def test_item_collection_lists_its_items(tmp_path):
    item = json.loads(ITEM.read_text())
    path = tmp_path / "items.json"
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": [item, {**item, "id": "b"}]})
    )
    assert [label.split("#")[1] for label, _ in read_stac_items(path)] == [item["id"], "b"]
