"""Saving an answer's masks: PNG over the image, GeoTIFF on the image's footprint."""

from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

from skyeye.chat.mask_export import save_reply_masks
from skyeye.chat.session import ChatReply
from skyeye.io.raster import RasterImage


def test_masks_saved_as_png_and_georeferenced_geotiff(tmp_path):
    data = np.random.default_rng(0).uniform(0, 3000, (4, 16, 16)).astype(np.float32)
    image = RasterImage(
        data=data,
        band_names=["B02", "B03", "B04", "B08"],
        wavelengths=[0.49, 0.56, 0.665, 0.842],
        crs=CRS.from_epsg(32633),
        transform=Affine(10, 0, 340000, 0, -10, 5820000),
    )
    mask = np.zeros((8, 8), bool)  # the model's grid: half the image's resolution
    mask[:2, 4:] = True
    reply = ChatReply(
        text="<p>water</p> [SEG]", masks=[mask], mask_phrases=["water"], mask_images=[0]
    )
    paths = save_reply_masks(reply, [image], tmp_path / "m", prefix="answer1")
    assert [p.name for p in paths] == ["answer1_mask1_water.png", "answer1_mask1_water.tif"]
    assert Image.open(paths[0]).mode == "RGB"
    with rasterio.open(paths[1]) as ds:
        assert ds.crs.to_epsg() == 32633
        assert ds.transform.a == 20 and ds.transform.c == 340000 and ds.transform.f == 5820000
        assert ds.read(1).tolist() == mask.astype(np.uint8).tolist()


def test_no_mask_no_file_and_plain_images_get_only_a_png(tmp_path):
    image = RasterImage(data=np.ones((3, 8, 8), np.float32), band_names=["R", "G", "B"])
    assert save_reply_masks(ChatReply(text="No."), [image], tmp_path / "none") == []
    assert not (tmp_path / "none").exists()
    reply = ChatReply(
        text="[SEG]", masks=[np.ones((8, 8), bool)], mask_phrases=[None], mask_images=[0]
    )
    paths = save_reply_masks(reply, [image], tmp_path / "p")
    assert [p.suffix for p in paths] == [".png"]  # no georeference: no GeoTIFF
