"""`--task refseg` on an image larger than the scene window: the whole-scene pipeline answers, and
its mask is compared at the label's full resolution; the report records window, overlap and gsd.
Samples not larger than the window keep the chat's path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from records import block, record, rle, write_image
from skyeye_testing import BIG_SHAPE, one_torch_thread, segmenting_chat, write_big_scene

from skyeye.evaluation.cli import main
from skyeye.evaluation.metrics import refseg_metrics
from skyeye.evaluation.runner import EvalConfig, run_evaluation
from skyeye.evaluation.samples import decode_rle
from skyeye.scene import analyze_scene

QUESTION = "segment the lake"


one_thread = pytest.fixture(scope="module", autouse=True)(one_torch_thread)


@pytest.fixture
def session(tiny_llm_dir):
    return segmenting_chat(tiny_llm_dir)  # every answer (chat or window) ends with [SEG]


@pytest.fixture
def data(tmp_path):
    """A refseg record on the 640 x 600 GeoTIFF (label at 600 x 640) and one on an 8 x 8 PNG."""
    write_big_scene(tmp_path / "big.tif")
    write_image(tmp_path, "a.png")
    label = np.zeros(BIG_SHAPE, bool)
    label[100:400, 50:500] = True
    big = record(
        "big",
        "segmentation",
        QUESTION,
        "<p>lake</p> [SEG]",
        images=("big.tif",),
        masks=[{"seg_index": 0, "rle": rle(label)}],
    )
    small = record(
        "small",
        "segmentation",
        QUESTION,
        "<p>lake</p> [SEG]",
        masks=[{"seg_index": 0, "rle": rle(block(slice(0, 4), slice(0, 4)))}],
    )
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (big, small)))
    return path


def _scene_mask(path, session, **kw) -> np.ndarray:
    result = analyze_scene(
        path,
        QUESTION,
        path.parent / "ref-scene",
        model=session,
        progress=False,
        max_new_tokens=session.settings.max_new_tokens,
        **kw,
    )
    with rasterio.open(result.paths["mask"]) as src:
        return src.read(1) == 1


def test_a_large_image_is_scored_on_the_scene_mask_at_label_resolution(session, data):
    report = run_evaluation(session, data, EvalConfig(task="refseg", image_root=data.parent))
    assert report["settings"]["scene"] == {"window": 512, "overlap": 64, "gsd": None, "batch": 8}
    big, small = report["samples"]
    assert big["scene"]["grid"] == list(BIG_SHAPE) and big["scene"]["windows"] == 4
    assert big["scene"]["window"] == 512 and big["scene"]["overlap"] == 64
    assert big["prediction"].startswith("Found ")
    (unit,) = big["masks"]
    pred, label = decode_rle(unit["pred_rle"]), decode_rle(unit["ref_rle"])
    assert pred.shape == label.shape == BIG_SHAPE
    # The prediction is the stitched scene mask itself, at full resolution.
    assert np.array_equal(pred, _scene_mask(data.parent / "big.tif", session))
    assert unit["iou"] == pytest.approx(refseg_metrics([pred], [label])["per_sample"][0]["iou"])
    # The 8 x 8 image is not larger than the window: the chat's path.
    assert small["scene"] is None and decode_rle(small["masks"][0]["pred_rle"]).shape == (8, 8)


def test_a_coarser_gsd_is_resized_to_the_label_and_recorded(session, data):
    config = EvalConfig(task="refseg", image_root=data.parent, scene_gsd=20.0)
    report = run_evaluation(session, data, config)
    big = report["samples"][0]
    assert report["settings"]["scene"]["gsd"] == 20.0 and big["scene"]["gsd"] == 20.0
    assert big["scene"]["grid"] == [300, 320]
    assert decode_rle(big["masks"][0]["pred_rle"]).shape == BIG_SHAPE


def test_without_the_scene_every_sample_takes_the_chat_path(session, data):
    config = EvalConfig(task="refseg", image_root=data.parent, scene=False)
    report = run_evaluation(session, data, config)
    assert report["settings"]["scene"] is None
    assert all("scene" not in s for s in report["samples"])
    assert not report["samples"][0]["prediction"].startswith("Found ")
    assert decode_rle(report["samples"][0]["masks"][0]["pred_rle"]).shape == BIG_SHAPE


@pytest.mark.parametrize(
    "flags", [["--scene-window", "0"], ["--scene-overlap", "512"], ["--scene-gsd", "0"]]
)
def test_bad_scene_options_exit_2(data, tmp_path, capsys, flags):
    argv = ["--data", str(data), "--task", "refseg", "--out", str(tmp_path / "r.json"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "scene" in err[0]
