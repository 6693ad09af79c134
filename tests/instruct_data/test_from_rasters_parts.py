"""Unit tests of the generator's parts: regions, positions, augmentation geometry, band subsets."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from instruct_data.from_rasters import regions
from instruct_data.from_rasters.regions import largest_region, percent_phrase, position_phrase
from instruct_data.from_rasters.spectral import index_masks
from instruct_data.from_rasters.tiling import (
    AUG_OPS,
    augment,
    is_north_up,
    select_bands,
    tile_windows,
)
from skyeye.io.raster import RasterImage


def test_largest_region_bfs_and_exclusive_box():
    m = np.zeros((10, 12), bool)
    m[1:3, 1:3] = True  # 4 px
    m[5:9, 4:11] = True  # 28 px
    m[0, 11] = True
    assert sorted(regions._regions_bfs(m), key=lambda r: -r[0]) == [
        (28, (5, 4, 9, 11)),
        (4, (1, 1, 3, 3)),
        (1, (0, 11, 1, 12)),
    ]
    assert largest_region(m) == (28, (5, 4, 9, 11))
    # Counting questions count regions from a minimum size.
    assert regions.count_regions(m, 1) == 3
    assert regions.count_regions(m, 4) == 2
    assert regions.count_regions(m, 29) == 0
    # Diagonal neighbours are separate regions (4-connectivity).
    d = np.eye(5, dtype=bool)
    assert largest_region(d)[0] == 1
    assert regions.count_regions(d, 1) == 5
    assert largest_region(np.zeros((3, 3), bool)) is None


def test_position_phrases_compass_and_image_relative():
    m = np.zeros((30, 30), bool)
    m[:10, :10] = True
    assert position_phrase(m, compass=True) == "in the north-west"
    assert position_phrase(m, compass=False) == "in the upper left"
    m2 = np.zeros((30, 30), bool)
    m2[20:, :] = True
    assert position_phrase(m2, compass=True) == "in the south-west, the south and the south-east"
    assert position_phrase(np.ones((30, 30), bool), compass=True) == "across the whole image"


@pytest.mark.parametrize(
    "frac,text",
    [
        (0.003, "less than 1%"),
        (0.04, "about 4%"),
        (0.31, "about 30%"),
        (0.98, "almost 100%"),
        (1.0, "100%"),
    ],
)
def test_percent_phrase(frac, text):
    assert percent_phrase(frac) == text


@pytest.mark.parametrize("op", AUG_OPS)
def test_augment_keeps_every_pixel_at_its_map_position(op):
    h, w = 4, 6
    arr = np.arange(h * w, dtype=np.float32).reshape(1, h, w)
    t = Affine(10, 0, 1000, 0, -10, 5000)
    out, t2 = augment(arr, op, t)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            v = int(out[0, i, j])
            r, c = divmod(v, w)
            assert t2 @ (j + 0.5, i + 0.5) == pytest.approx(t @ (c + 0.5, r + 0.5))
    assert not is_north_up(t2) and is_north_up(t)


def test_band_subsets_by_wavelength():
    s2 = [0.49, 0.56, 0.665, 0.842, 1.61, 2.19]
    assert select_bands(s2, "rgb") == [2, 1, 0]
    assert select_bands(s2, "rgbn") == [2, 1, 0, 3]
    assert select_bands(s2, "s2-9") is None  # no red-edge bands
    landsat5 = [0.485, 0.56, 0.66, 0.83, 1.65, 2.215]
    assert select_bands(landsat5, "rgbn") == [2, 1, 0, 3]
    assert select_bands([None, None], "rgb") is None
    with pytest.raises(ValueError, match="unknown band subset"):
        select_bands(s2, "rgbx")


def test_tile_windows_cover_the_scene_flush_with_the_end():
    assert tile_windows(101, 100, 64, 37) == [(0, 0), (0, 36), (37, 0), (37, 36)]
    assert tile_windows(50, 50, 64, 64) == []


def test_index_masks_rules():
    # Pixels: water, vegetation, cloud, snow (bright, low SWIR: not cloud), soil.
    spectra = np.array(
        [
            [0.06, 0.07, 0.04, 0.02, 0.01],
            [0.03, 0.06, 0.03, 0.40, 0.18],
            [0.45, 0.45, 0.46, 0.50, 0.40],
            [0.80, 0.80, 0.80, 0.75, 0.05],
            [0.10, 0.13, 0.17, 0.25, 0.30],
        ],
        dtype=np.float32,
    ).T[:, None, :]  # (C=5, 1, 5)
    img = RasterImage(
        data=spectra * 10000,
        band_names=["B02", "B03", "B04", "B08", "B11"],
        wavelengths=[0.49, 0.56, 0.665, 0.842, 1.61],
    )
    masks, rules = index_masks(img, ["water", "vegetation", "cloud"], 1e-4)
    assert masks["water"][0].tolist() == [True, False, False, False, False]
    assert masks["vegetation"][0].tolist() == [False, True, False, False, False]
    assert masks["cloud"][0].tolist() == [False, False, True, False, False]
    assert "B03" in rules["water"] and "B08" in rules["water"]
    mw, rw = index_masks(img, ["water"], 1e-4, water_index="mndwi")
    assert "B11" in rw["water"] and mw["water"][0, 0]
