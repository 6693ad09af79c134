"""Block averaging and majority labels of instruct_data.from_rasters.zoom (hand-computed)."""

from __future__ import annotations

import numpy as np
import pytest

from instruct_data.from_rasters.zoom import block_majority, block_mean


def test_block_mean_ignores_nan_and_drops_partial_blocks():
    data = np.array([[[1, 3, 5, 7, 9], [1, 3, np.nan, np.nan, 9], [0, 0, 0, 0, 0]]], np.float32)
    out = block_mean(data, 2)
    assert out.shape == (1, 1, 2)  # the last row and column do not fill a block
    np.testing.assert_allclose(out[0, 0], [2.0, 6.0])  # (5 + 7) / 2: NaN pixels left out
    all_nan = np.full((1, 2, 2), np.nan, np.float32)
    assert np.isnan(block_mean(all_nan, 2)).all()


def test_block_majority_needs_half_the_block_labelled():
    cmap = np.array([[1, 2, 0, 0], [2, 2, 0, 3]], np.int16)
    out = block_majority(cmap, 2, n_classes=3)
    # left block: class 2 wins 3:1; right block: 1 labelled pixel of 4 -> unlabelled
    assert out.tolist() == [[2, 0]]
    half = np.array([[3, 3], [0, 0]], np.int16)
    assert block_majority(half, 2, n_classes=3).tolist() == [[3]]


def test_zoom_factor_must_be_positive():
    from instruct_data.from_rasters.zoom import zoom_out
    from skyeye.io.raster import RasterImage

    img = RasterImage(data=np.zeros((1, 4, 4), np.float32), band_names=["B1"])
    with pytest.raises(ValueError, match=">= 1"):
        zoom_out(img, [], 0)
    assert zoom_out(img, [], 1)[0] is img
