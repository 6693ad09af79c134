"""The rule that sends a chat answer to the whole scene: the answer's own mask or stated amount,
a georeferenced image larger than the window; the question's wording plays no part."""

from __future__ import annotations

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import from_origin

from skyeye.chat.session import ChatReply
from skyeye.io.image import RasterImage
from skyeye.scenechat.follow import SceneOptions, scene_folder, scene_image_index, wants_scene


def _image(shape=(600, 640), georeferenced=True, path="T33UUU.tif") -> RasterImage:
    geo = {"crs": CRS.from_epsg(32633), "transform": from_origin(0, 0, 10, 10)}
    return RasterImage(
        data=np.zeros((3, 48, 51), np.float32),
        band_names=["R", "G", "B"],
        source_shape=shape,
        path=path,
        **(geo if georeferenced else {}),
    )


def test_masks_and_stated_amounts_ask_for_the_scene_plain_answers_do_not():
    mask = [np.zeros((4, 4), bool)]
    assert wants_scene(ChatReply("<p>water</p> [SEG]", masks=mask, mask_images=[0]))
    assert wants_scene(ChatReply("About 30 % of it is forest."))
    assert wants_scene(ChatReply("The lake covers 12.5 ha."))
    assert wants_scene(ChatReply("roughly 3 km² of fields"))
    assert not wants_scene(ChatReply("Yes, there is water in the north."))
    assert not wants_scene(ChatReply("There are 3 lakes."))
    # A change answer compares two dates: no single date's scene can answer it.
    change = ChatReply("<p>changed land cover</p> [SEG] Yes — 12 ha changed.", masks=mask)
    change.mask_images, change.mask_pairs = [1], [(0, 1)]
    assert not wants_scene(change)
    assert scene_image_index(change, [_image(), _image()], 512) is None


def test_the_image_must_be_larger_than_the_window_and_georeferenced():
    reply = ChatReply("About 30 % is water.")
    assert scene_image_index(reply, [_image()], 512) == 0
    assert scene_image_index(reply, [_image((512, 512))], 512) is None
    assert scene_image_index(reply, [_image((512, 512))], 256) == 0
    assert scene_image_index(reply, [_image(georeferenced=False)], 512) is None
    assert scene_image_index(ChatReply("Yes."), [_image()], 512) is None
    assert scene_image_index(reply, [], 512) is None


def test_the_masked_image_is_the_one_analysed():
    images = [_image(path="a.tif"), _image((100, 100), path="b.tif")]
    masked_b = ChatReply("[SEG]", masks=[np.zeros((4, 4), bool)], mask_images=[1])
    assert scene_image_index(masked_b, images, 512) is None  # b is small
    masked_a = ChatReply("[SEG]", masks=[np.zeros((4, 4), bool)], mask_images=[0])
    assert scene_image_index(masked_a, images, 512) == 0


def test_scene_folders_differ_by_question_and_settings(tmp_path):
    image = "data/T33UUU.tif"
    a = scene_folder(tmp_path, image, "Show the water.", SceneOptions())
    assert a == scene_folder(tmp_path, image, "Show the water.", SceneOptions())
    assert a != scene_folder(tmp_path, image, "Show the forest.", SceneOptions())
    assert a != scene_folder(tmp_path, image, "Show the water.", SceneOptions(window=256))
    assert a != scene_folder(tmp_path, "other/T33UUU.tif", "Show the water.", SceneOptions())
    assert a.parent == tmp_path and a.name.startswith("scene-t33uuu-show-the-water")
