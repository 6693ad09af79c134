"""skyeye.io.resample: the one rule for resizing label masks (nearest, pixel centres) and the
nodata-aware resize of band data."""

from __future__ import annotations

import numpy as np
import pytest

from skyeye.evaluation import scoring
from skyeye.io.resample import resize_mask, resize_with_nodata


def test_resize_mask_nearest_at_pixel_centres():
    small = np.array([[True, False], [False, True]])
    big = resize_mask(small, (4, 4))
    assert big.tolist() == [
        [True, True, False, False],
        [True, True, False, False],
        [False, False, True, True],
        [False, False, True, True],
    ]
    # Down: output pixel i takes input pixel floor((i + 0.5) * 4 / 2) = 1, 3.
    fine = np.zeros((4, 4), dtype=bool)
    fine[1, 3] = fine[3, 1] = True
    assert resize_mask(fine, (2, 2)).tolist() == [[False, True], [True, False]]
    assert resize_mask(small, (2, 2)).tolist() == small.tolist()


def test_resize_mask_keeps_labels_unblended_and_non_square():
    # A 1-pixel line survives a stretch unblurred and a bool comes back for any input dtype.
    mask = np.zeros((3, 5), dtype=np.uint8)
    mask[1] = 1
    out = resize_mask(mask, (6, 10))
    assert out.dtype == bool and out.shape == (6, 10)
    assert out.sum(axis=1).tolist() == [0, 0, 10, 10, 0, 0]


@pytest.mark.parametrize("shape", [(0, 4), (4,), (2, 2, 2)])
def test_resize_mask_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="positive sizes|must be"):
        resize_mask(np.ones((2, 2), bool), shape)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        resize_mask(np.ones((1, 2, 2), bool), (2, 2))


def test_scoring_uses_the_same_rule():
    assert scoring.resize_mask is resize_mask


def test_resize_with_nodata_ignores_nodata_and_is_per_band_whatever_the_masks():
    """Bands sharing one nodata mask are resized exactly as each band alone is (the shared weight
    plane is a shortcut, not an approximation); a band with its own hole keeps it to itself."""
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 255, (4, 97, 83)).astype(np.float32)
    data[:, 10:20, 5:9] = np.nan
    alone = np.stack([resize_with_nodata(data[i : i + 1], 40, 33)[0] for i in range(4)])
    assert np.array_equal(resize_with_nodata(data, 40, 33), alone, equal_nan=True)
    own_hole = data.copy()
    own_hole[2, 40:97, :] = np.nan  # band 2's lower part is nodata: its output there is NaN
    out = resize_with_nodata(own_hole, 40, 33)
    assert np.isnan(out[2, 30:]).all() and not np.isnan(out[[0, 1, 3], 30:]).any()
    assert np.array_equal(out[[0, 1, 3]], alone[[0, 1, 3]], equal_nan=True)
    # Nodata never bleeds in: a constant band with a hole stays that constant where valid.
    flat = np.full((2, 50, 50), 7.0, np.float32)
    flat[:, :25] = np.nan
    small = resize_with_nodata(flat, 20, 20)
    assert np.allclose(small[~np.isnan(small)], 7.0)
