"""Change without a model: shared bands, Otsu on the difference, index baselines, scores."""

from __future__ import annotations

import numpy as np
import pytest

from skyeye.errors import AlignmentError, MissingBandError
from skyeye.evaluation.change_baselines import (
    change_scores,
    get_change_baseline,
    list_change_baselines,
)
from skyeye.grounding.change import class_change, otsu_change, shared_bands
from skyeye.io.image import RasterImage

S2 = {"B02": 0.49, "B03": 0.56, "B04": 0.665, "B08": 0.842, "B11": 1.61}


def _s2(data, bands=tuple(S2)):
    return RasterImage(
        data=np.asarray(data, np.float32),
        band_names=list(bands),
        wavelengths=[S2[b] for b in bands],
        path="x.tif",
    )


def _scene(built: np.ndarray, seed: int = 0):
    """Vegetation everywhere (NIR high), built-up (SWIR1 > NIR, bright) where ``built``."""
    rng = np.random.default_rng(seed)
    h, w = built.shape
    d = np.empty((5, h, w), np.float32)
    d[:] = np.array([0.05, 0.08, 0.05, 0.40, 0.20])[:, None, None]
    d[:, built] = np.array([0.20, 0.22, 0.24, 0.25, 0.35])[:, None]
    return _s2(d + rng.normal(0, 0.005, d.shape).astype(np.float32))


def test_otsu_and_built_up_index_find_a_new_block_and_score_it():
    before = np.zeros((40, 40), bool)
    after = before.copy()
    after[10:20, 5:25] = True
    a, b = _scene(before, 0), _scene(after, 1)
    otsu = otsu_change(a, b)
    assert (otsu.mask == after).mean() > 0.99
    built = get_change_baseline("built-up-index")(a, b)
    scores = change_scores([otsu.mask, built], [after, after])
    assert scores["giou"] > 0.95 and scores["f1"] > 0.95 and scores["missing"] == 0
    # an empty prediction of a real change scores 0, a wrong one lowers precision
    assert change_scores([np.zeros_like(after)], [after])["ciou"] == 0.0
    assert change_scores([~after], [after])["precision"] == 0.0


def test_pixels_without_data_in_either_date_are_never_change():
    built = np.zeros((20, 20), bool)
    built[5:10, 5:10] = True
    a, b = _scene(np.zeros_like(built)), _scene(built, 1)
    b.data[:, :, :3] = np.nan
    mask = otsu_change(a, b).mask
    assert not mask[:, :3].any()
    valid = a.valid_mask & b.valid_mask
    scored = change_scores([np.ones_like(built)], [built], [valid])
    assert scored["precision"] == pytest.approx(25 / valid.sum())


def test_only_shared_bands_are_compared_and_none_is_a_clear_error():
    a = _s2(np.ones((5, 4, 4)))
    b = _s2(np.ones((2, 4, 4)), bands=("B04", "B08"))
    assert shared_bands(a, b) == [(2, 0), (3, 1)]
    rgb = RasterImage(data=np.ones((1, 4, 4), np.float32), band_names=["VV"], wavelengths=None)
    with pytest.raises(MissingBandError, match="share no band"):
        shared_bands(a, rgb)
    with pytest.raises(AlignmentError, match="align them first"):
        otsu_change(a, _s2(np.ones((5, 5, 4))))


def test_index_baselines_need_their_bands():
    rgb = RasterImage(
        data=np.ones((3, 4, 4), np.float32),
        band_names=["R", "G", "B"],
        wavelengths=[0.665, 0.56, 0.49],
    )
    for name in ("built-up-index", "vegetation-index", "dndwi-otsu"):
        assert get_change_baseline(name)(rgb, rgb) is None
    assert change_scores([None], [np.zeros((4, 4), bool)])["missing"] == 1
    assert "otsu-difference" in list_change_baselines()
    with pytest.raises(KeyError, match="choose one of"):
        get_change_baseline("magic")


def test_class_change_splits_gains_and_losses_inside_the_valid_area():
    before = np.array([[1, 1, 0, 0]], bool)
    after = np.array([[1, 0, 1, 1]], bool)
    valid = np.array([[1, 1, 1, 0]], bool)
    out = class_change(before, after, valid)
    assert out.gained.tolist() == [[False, False, True, False]]
    assert out.lost.tolist() == [[False, True, False, False]]
    assert out.changed.sum() == 2
