"""skyeye.io.resample.resize_mask: the one rule for resizing label masks (nearest, pixel centres)."""

from __future__ import annotations

import numpy as np
import pytest

from skyeye.evaluation import scoring
from skyeye.io.resample import resize_mask


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
