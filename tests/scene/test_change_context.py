"""The context pass of a two-date scene (`skyeye.scene.change_context`): a window that a change
mostly fills is seen again over twice its size at half resolution, and the masks merged, so a
lake larger than a window is measured whole where the decoder finds less of a change that fills
its view."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skyeye_testing import NdwiChangeHead, build_tiny_llm, change_chat, change_grid, write_tiff

from skyeye.errors import SceneError
from skyeye.io.image import RasterImage
from skyeye.scene.change_context import block_mean, context_region, needs_context
from skyeye.scene.change_pipeline import analyze_scene_pair
from skyeye.scene.config import SceneConfig
from skyeye.scene.windows import SceneWindow

SIZE = 192
LAND = np.array([40.0, 60.0, 50.0, 160.0])[:, None, None]  # NDWI < 0
WATER = np.array([50.0, 90.0, 40.0, 20.0])[:, None, None]  # NDWI > 0


class FillShyChangeHead(NdwiChangeHead):
    """The trained decoder's failure, scripted: where the change fills more than half of the
    view, it finds only the changed pixels of the view's left half."""

    def forward(self, seg, vb, va, grid, size, pb, pa, wb, wa):
        logits = super().forward(seg, vb, va, grid, size, pb, pa, wb, wa)
        out = []
        for one in logits:
            one = one.clone()
            if (one > 0).float().mean() > 0.5:
                one[:, one.shape[1] // 2 :] = -20.0
            out.append(one)
        return torch.stack(out)


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    return build_tiny_llm(tmp_path_factory.mktemp("llm"))


@pytest.fixture(scope="module")
def lake_pair(tmp_path_factory):
    """Land on both dates; on the second, a square lake of 80 x 80 px, which fills the window
    at (64, 64) of a 64-px layout without overlap."""
    folder = tmp_path_factory.mktemp("lake")
    transform, crs = change_grid()
    rng = np.random.default_rng(0)
    before = LAND + rng.uniform(-4, 4, size=(4, SIZE, SIZE))
    after = LAND + rng.uniform(-4, 4, size=(4, SIZE, SIZE))
    lake = np.zeros((SIZE, SIZE), bool)
    lake[56:136, 56:136] = True
    after = np.where(lake, WATER, after)
    files = []
    for data, day, name in ((before, "2018-05-01", "a.tif"), (after, "2020-05-01", "b.tif")):
        image = RasterImage(data=data.astype(np.float32), band_names=["B", "G", "R", "NIR"],
                            wavelengths=[0.49, 0.56, 0.665, 0.842], crs=crs, transform=transform,
                            datetime=day)  # fmt: skip
        files.append(write_tiff(image, folder / name))
    return files, int(lake.sum()) * abs(transform.a * transform.e)


def _run(llm, files, out, **kw):
    session = change_chat(llm)
    session.model.change_head = FillShyChangeHead()
    config = dict(window=64, overlap=0, batch=4, progress=False) | kw
    return analyze_scene_pair(files[0], files[1], "What changed?", out, model=session, **config)


def test_a_lake_that_fills_a_window_is_measured_whole(llm, lake_pair, tmp_path):
    files, lake_m2 = lake_pair
    short = _run(llm, files, tmp_path / "off", change_context=0.0)
    # Without the pass, the window the lake fills keeps only its left half.
    assert short.answer["change"]["area_m2"] < 0.9 * lake_m2
    assert short.answer["settings"]["context_windows"] == 0

    result = _run(llm, files, tmp_path / "on")
    assert result.answer["change"]["area_m2"] == pytest.approx(lake_m2, rel=0.05)
    seen = []
    for path in sorted((tmp_path / "on" / ".scene-work").glob("w*.json")):
        record = json.loads(path.read_text())
        if "context" in record:
            seen.append((record["row"], record["col"]))
            assert record["mask_pixels"] > record["context"]["mask_pixels_window"]
    # Only the window the lake fills (and those it covers a quarter of) are seen again.
    assert (64, 64) in seen and len(seen) < 9
    assert result.answer["settings"]["context_windows"] == len(seen)

    # Resumed: nothing computed again, the same answer, the same count.
    again = _run(llm, files, tmp_path / "on")
    assert again.windows_run == 0
    assert again.answer["change"] == result.answer["change"]
    assert again.answer["settings"]["context_windows"] == len(seen)


def test_a_window_killed_between_its_two_files_is_merged_once(llm, lake_pair, tmp_path):
    """The merged probability saved but not the record's mark: the resumed pass merges the
    window's own probability again, not the merged one."""
    files, _ = lake_pair
    first = _run(llm, files, tmp_path / "out")
    work = tmp_path / "out" / ".scene-work"
    path = next(p for p in work.glob("w*.json") if "context" in json.loads(p.read_text()))
    record = json.loads(path.read_text())
    with np.load(path.with_suffix(".npz")) as data:
        own = data["prob_window"].copy()
    record["mask_pixels"] = record.pop("context")["mask_pixels_window"]
    path.write_text(json.dumps(record))
    again = _run(llm, files, tmp_path / "out")
    assert again.answer["change"] == first.answer["change"]
    with np.load(path.with_suffix(".npz")) as data:
        assert np.array_equal(data["prob_window"], own)


def test_context_region_is_centred_and_kept_inside_the_scene():
    win = SceneWindow(3, 512, 512, 512, 512)
    assert context_region(win, 4000, 4000, 2) == SceneWindow(3, 256, 256, 1024, 1024)
    corner = SceneWindow(0, 0, 0, 512, 512)
    assert context_region(corner, 4000, 4000, 2) == SceneWindow(0, 0, 0, 1024, 1024)
    edge = SceneWindow(5, 3488, 3488, 512, 512)
    assert context_region(edge, 4000, 4000, 2) == SceneWindow(5, 2976, 2976, 1024, 1024)
    small = SceneWindow(1, 0, 88, 600, 512)
    assert context_region(small, 600, 700, 2) == SceneWindow(1, 0, 0, 600, 700)


def test_block_mean_averages_blocks_and_keeps_nodata():
    data = np.arange(2 * 5 * 4, dtype=np.float32).reshape(2, 5, 4)
    data[1, 0, 0] = np.nan
    out = block_mean(data, 2)
    assert out.shape == (2, 3, 2) and out.dtype == np.float32
    assert out[0, 0, 0] == pytest.approx(np.mean([0, 1, 4, 5]))
    assert out[0, 2, 1] == pytest.approx(np.mean([18, 19, 18, 19]))  # the odd row: edge-padded
    assert np.isnan(out[1, 0, 0]) and np.isfinite(out[1, 0, 1])


def test_which_windows_are_seen_again():
    assert needs_context({"valid_pixels": 100, "mask_pixels": 30}, 0.25)
    assert not needs_context({"valid_pixels": 100, "mask_pixels": 20}, 0.25)
    assert not needs_context({"valid_pixels": 100, "mask_pixels": 90, "context": {}}, 0.25)
    assert not needs_context({"skipped": True, "valid_pixels": 0}, 0.25)


def test_a_share_outside_0_1_is_one_line():
    with pytest.raises(SceneError, match="--change-context must be a share"):
        SceneConfig(change_context=1.5)
