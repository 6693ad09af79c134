"""Instances of a mask: what "how many?" and "where are they?" are measured on."""

from __future__ import annotations

import numpy as np
import pytest

from skyeye.grounding.instances import label_instances, mask_instances, splits_touching
from skyeye.grounding.parse import box_corners


def disc(mask: np.ndarray, cy: int, cx: int, r: int) -> None:
    yy, xx = np.ogrid[: mask.shape[0], : mask.shape[1]]
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = True


def test_three_separate_and_two_touching_blobs_are_five_objects():
    mask = np.zeros((100, 120), bool)
    disc(mask, 15, 15, 8)
    disc(mask, 15, 60, 6)
    disc(mask, 80, 20, 9)
    disc(mask, 60, 80, 10)  # these two touch: one connected region, two objects
    disc(mask, 60, 99, 10)
    assert int(label_instances(mask, split_touching=False).max()) == 4
    found = mask_instances(mask)
    assert len(found) == 5
    centres = sorted((i.box.center[1] * 100, i.box.center[0] * 120) for i in found)
    expected = sorted([(15, 15), (15, 60), (80, 20), (60, 80), (60, 99)])
    assert np.allclose(centres, expected, atol=2.5)


def test_an_elongated_river_stays_one_object_and_specks_are_dropped():
    mask = np.zeros((64, 200), bool)
    for x in range(5, 195):  # a meandering band 8-10 px wide
        y = int(30 + 8 * np.sin(x / 15))
        mask[y - 4 : y + 4 + (x % 3 == 0), x] = True
    mask[2, 2] = mask[60, 190] = True  # single-pixel specks
    assert len(mask_instances(mask)) == 1


def test_boxes_are_on_the_0_1_grid_and_rotated_boxes_fit_a_tilted_object():
    mask = np.zeros((100, 100), bool)
    mask[20:40, 10:50] = True
    (only,) = mask_instances(mask, phrase="field")
    assert (only.box.x1, only.box.y1, only.box.x2, only.box.y2) == (0.1, 0.2, 0.5, 0.4)
    assert only.box.phrase == "field" and only.pixels == 800
    tilted = np.zeros((200, 200), bool)
    yy, xx = np.mgrid[:200, :200]
    t = np.radians(30)  # a 100 x 30 rectangle turned 30° counter-clockwise on screen
    u = (xx - 100) * np.cos(t) - (yy - 100) * np.sin(t)
    v = (xx - 100) * np.sin(t) + (yy - 100) * np.cos(t)
    tilted[(abs(u) <= 50) & (abs(v) <= 15)] = True
    (box,) = [i.box for i in mask_instances(tilted, rotated=True)]
    assert box.angle == pytest.approx(30, abs=2)
    assert box.width * 200 == pytest.approx(100, abs=3)
    assert box.height * 200 == pytest.approx(30, abs=3)
    corners = np.array(box_corners(box, 200, 200))
    assert np.allclose(corners.mean(axis=0), (100, 100), atol=1.5)


def test_labels_do_not_depend_on_anything_but_the_mask():
    rng = np.random.default_rng(0)
    mask = rng.random((80, 80)) > 0.7
    assert np.array_equal(label_instances(mask), label_instances(mask.copy()))


def test_region_classes_are_connected_regions_compact_objects_are_split():
    """Water, clouds, fields are regions (never split); aircraft and unnamed masks are split."""
    mask = np.zeros((100, 120), bool)
    disc(mask, 15, 15, 8)
    disc(mask, 60, 80, 10)  # two round ponds / clouds touching through a narrow neck
    disc(mask, 60, 99, 10)
    for region in ("water", "water bodies", "clouds", "Cloud", "fields", "lake"):
        assert not splits_touching(region), region
        found = mask_instances(mask, phrase=region)
        assert len(found) == 2, region
        largest = max(found, key=lambda i: i.pixels)  # the two touching discs, boxed whole
        assert (largest.box.x1 * 120, largest.box.x2 * 120) == (70, 110)
    for compact in ("aircraft", "buildings", None):
        assert splits_touching(compact), compact
        assert len(mask_instances(mask, phrase=compact)) == 3, compact
