"""The chat's and the scene's GeoJSON of the same mask on the same grid are the same polygons
with the same areas (issue 27): both come from `skyeye.grounding.polygons.polygonize`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from skyeye_testing import REPO

from skyeye.chat.reply_geo import reply_extension
from skyeye.chat.session import ChatReply
from skyeye.grounding.geo import mask_area
from skyeye.io.raster import RasterImage
from skyeye.scene.outputs import write_polygons
from skyeye.scene.source import Grid
from skyeye.scene.stitch import INSIDE, NODATA, OUTSIDE

EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"


def _mask(shape: tuple[int, int]) -> np.ndarray:
    """Blobs, a hole, a diagonal chain (one region only with 8-connectivity) and speckle the
    sieve removes."""
    rng = np.random.default_rng(7)
    mask = np.zeros(shape, bool)
    mask[10:40, 12:50] = True
    mask[20:25, 20:30] = False  # a hole
    for k in range(12):
        mask[60 + k, 70 + k] = mask[60 + k, 71 + k] = True  # a 2-px-wide diagonal
    mask[rng.integers(0, shape[0], 30), rng.integers(0, shape[1], 30)] = True  # speckle
    mask[90:93, 5:6] = True  # 3 px: sieved away
    return mask


@pytest.mark.parametrize("crs_option", ["4326", "native"])
def test_the_chat_and_the_scene_give_the_same_geojson_of_one_mask(tmp_path, crs_option):
    with rasterio.open(EXAMPLE) as src:
        transform, crs = src.transform, src.crs
    shape = (100, 120)
    mask = _mask(shape)
    # The scene: the mask as its stitched COG on the grid (1 inside, 0 outside, 255 nodata: the
    # last row's outside pixels, where the chat's mask is False too).
    tif = tmp_path / "mask.tif"
    cog = np.where(mask, INSIDE, OUTSIDE).astype(np.uint8)
    cog[-1][~mask[-1]] = NODATA
    profile = dict(driver="GTiff", height=shape[0], width=shape[1], count=1, dtype="uint8",
                   nodata=NODATA, crs=crs, transform=transform)  # fmt: skip
    with rasterio.open(tif, "w", **profile) as dst:
        dst.write(cog, 1)
    grid = Grid(height=shape[0], width=shape[1], transform=transform, crs=crs)
    geojson, gpkg = tmp_path / "mask.geojson", tmp_path / "mask.gpkg"
    summary = write_polygons(tif, grid, geojson, gpkg, native_crs=crs_option == "native")
    scene = json.loads(geojson.read_text())["features"]
    # The chat: a reply whose mask lies on an image of that grid (the server's and MCP's JSON).
    image = RasterImage(
        data=np.zeros((3, *shape), np.float32),
        band_names=["B04", "B03", "B02"],
        crs=crs,
        transform=transform,
    )
    area = mask_area(mask, transform=transform, crs=crs)
    reply = ChatReply("<p>water</p> [SEG]", masks=[mask], mask_phrases=["water"],
                      mask_images=[0], mask_areas=[area])  # fmt: skip
    if crs_option == "native":
        from skyeye.grounding.geo import masks_to_geojson

        chat = masks_to_geojson(mask, ["water"], transform=transform, crs=crs)["features"][0]
    else:
        chat = reply_extension(reply, [image])["masks"][0]["geojson"]

    assert len(scene) == summary["count"] == len(chat["geometry"]["coordinates"]) >= 2
    for polygon, feature in zip(chat["geometry"]["coordinates"], scene, strict=True):
        rings = feature["geometry"]["coordinates"]
        assert len(rings) == len(polygon)
        for ring_chat, ring_scene in zip(polygon, rings, strict=True):
            # GDAL's GeoJSON writer prints 15 significant digits: equal to the last of them.
            assert np.allclose(np.asarray(ring_chat), np.asarray(ring_scene), rtol=1e-14, atol=0)
    assert [f["properties"]["area_m2"] for f in scene] == pytest.approx(
        chat["properties"]["polygon_areas_m2"], rel=1e-12
    )
    methods = {f["properties"]["area_method"] for f in scene}
    assert methods == {chat["properties"]["area_method"]} == {summary["area_method"]}
    # One hole kept, speckle and the 3-px bar gone, the diagonal one region.
    assert sum(len(p) - 1 for p in chat["geometry"]["coordinates"]) == 1
