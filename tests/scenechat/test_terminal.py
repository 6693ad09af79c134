"""`python -m skyeye.chat` on a large GeoTIFF: a mask answer is followed by the whole scene at its
own resolution (the COG on the scene's grid), `--no-scene` keeps the read image's masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from skyeye_testing import (
    BIG_SHAPE,
    REPO,
    make_tiny_model,
    one_torch_thread,
    run_chat_cli,
    segmenting_chat,
    write_big_scene,
)

import skyeye.chat.session
from skyeye.scenechat.terminal import main

PROMPT = "segment the lake"
EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"


one_thread = pytest.fixture(scope="module", autouse=True)(one_torch_thread)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    return write_big_scene(tmp_path_factory.mktemp("scene") / "big.tif")


@pytest.fixture(scope="module")
def folder(tiny_llm_dir, tmp_path_factory):
    """A model folder of the tiny random SkyEye with a mask head (what `--model` loads)."""
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    folder = tmp_path_factory.mktemp("model") / "model"
    model.save_pretrained(folder, processor=processor)
    return folder


@pytest.fixture
def segmenting(monkeypatch, tiny_llm_dir):
    """`load_chat` gives the tiny model scripted to end every answer with [SEG] (a mask)."""
    monkeypatch.setattr(
        skyeye.chat.session, "load_chat", lambda *a, **k: segmenting_chat(tiny_llm_dir)
    )


def _ask(folder, image, out, *extra):
    return main(
        ["--model", str(folder), "--image", str(image), "--prompt", PROMPT]
        + ["--save-masks", str(out), "--dtype", "float32", *extra]
    )


def test_a_mask_answer_on_a_large_geotiff_writes_the_scene_cog_at_full_resolution(
    big, folder, segmenting, tmp_path, capsys
):
    assert _ask(folder, big, tmp_path / "out") == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    # stdout: the chat's answer, then the scene's, nothing else (files and progress on stderr).
    assert len(lines) == 2 and lines[1].startswith("Whole scene at its own resolution (640 x 600")
    assert "scene file" not in captured.out and "%|" not in captured.out
    written = [
        line.split(": ", 1)[1].rstrip(")")
        for line in captured.err.splitlines()
        if line.startswith("(scene file: ")
    ]
    names = sorted(p.rsplit("/", 1)[1] for p in written)
    assert names == ["answer.json", "mask.geojson", "mask.gpkg", "mask.tif", "preview.png"]
    mask_tif = next(p for p in written if p.endswith("mask.tif"))
    with rasterio.open(mask_tif) as m, rasterio.open(big) as s:
        assert (m.height, m.width) == BIG_SHAPE == (s.height, s.width)
        assert (m.crs, m.transform) == (s.crs, s.transform)
        assert set(np.unique(m.read(1))) <= {0, 1, 255}
    answer = json.loads(Path(next(p for p in written if p.endswith("answer.json"))).read_text())
    assert answer["prompt"] == PROMPT and answer["settings"]["window"] == 512
    assert answer["answer"] in lines[1]
    # The thumbnail's masks (read at 512 px) are not what the files are: none were saved.
    assert not list((tmp_path / "out").glob("answer1_mask*"))


def test_the_scene_answer_stays_in_the_conversation(
    big, folder, tiny_llm_dir, monkeypatch, tmp_path
):
    """A follow-up question ("how large is it?") sees the whole scene's figures in the history."""
    sessions = []

    def load(*args, **kwargs):
        sessions.append(segmenting_chat(tiny_llm_dir))
        return sessions[-1]

    monkeypatch.setattr(skyeye.chat.session, "load_chat", load)
    assert _ask(folder, big, tmp_path / "out") == 0
    last = sessions[0].messages[-1]
    assert last["role"] == "assistant"
    assert "Whole scene at its own resolution (640 x 600" in last["content"]
    assert sessions[0].last_reply.text == last["content"]


def test_no_scene_keeps_the_masks_of_the_image_as_read(big, folder, segmenting, tmp_path, capsys):
    assert _ask(folder, big, tmp_path / "out", "--no-scene") == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 1
    assert "Whole scene" not in captured.out and not list((tmp_path / "out").glob("scene-*"))
    (tif,) = (tmp_path / "out").glob("answer1_mask1_*.tif")
    with rasterio.open(tif) as m:
        assert (m.height, m.width) == (480, 512)  # the chat's read grid, not the scene's


def test_an_image_not_larger_than_the_window_keeps_the_thumbnail_path(
    folder, segmenting, tmp_path, capsys
):
    assert _ask(folder, EXAMPLE, tmp_path / "out") == 0  # 512 x 512: the window itself
    assert "Whole scene" not in capsys.readouterr().out
    assert list((tmp_path / "out").glob("answer1_mask1_*.tif"))
    assert not list((tmp_path / "out").glob("scene-*"))


def test_a_smaller_scene_window_sends_the_same_image_to_the_scene(
    folder, segmenting, tmp_path, capsys
):
    code = _ask(folder, EXAMPLE, tmp_path / "out", "--scene-window", "256", "--scene-overlap", "0")
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("Whole scene at its own resolution (512 x 512 px, 4 windows of 256 px)")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--scene-window", "0"], "--scene-window must be a positive"),
        (["--scene-overlap", "512"], "--scene-overlap must be in [0, --scene-window)"),
        (["--scene-batch", "0"], "--scene-batch must be at least 1"),
        (["--scene-gsd", "-10"], "--scene-gsd must be a positive"),
    ],
)
def test_bad_scene_options_exit_2_with_one_line(folder, tmp_path, capsys, flags, message):
    assert _ask(folder, EXAMPLE, tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_interactive_questions_follow_up_on_the_scene_and_no_scene_is_kept(
    big, folder, segmenting, tmp_path, capsys, monkeypatch
):
    lines = iter(["describe this image .", PROMPT, "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    argv = ["--model", str(folder), "--image", str(big), "--save-masks", str(tmp_path / "out")]
    assert main([*argv, "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    # Every scripted answer has a mask: both questions go to the scene, each its own folder.
    assert out.count("Whole scene at its own resolution (640 x 600 px") == 2
    assert len(list((tmp_path / "out").glob("scene-*/mask.tif"))) == 2


@pytest.mark.slow
def test_embedded_model_answers_a_mask_question_about_a_large_scene(big, tmp_path):
    """The README's command on a 640 x 600 Sentinel-2 GeoTIFF with the real embedded model."""
    result = run_chat_cli(
        big,
        "Show me where the water is in this image with a mask.",
        "--save-masks",
        str(tmp_path / "out"),
        "--max-new-tokens",
        "40",
    )
    lines = result.stdout.strip().splitlines()
    assert lines and "(scene file:" not in result.stdout
    # skyeye-tiny answers this prompt with a water mask (README), so the scene follows.
    (mask,) = (tmp_path / "out").glob("scene-*/mask.tif")
    assert lines[-1].startswith("Whole scene at its own resolution (640 x 600 px")
    with rasterio.open(mask) as m, rasterio.open(big) as s:
        assert (m.height, m.width, m.crs, m.transform) == (s.height, s.width, s.crs, s.transform)
