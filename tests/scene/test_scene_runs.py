"""Runs that never mix answers: run identity, the `--out` lock, rotated and photo inputs, and
one permission mode for every output file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from skyeye_testing import REPO

from skyeye.chat.measured import format_area
from skyeye.scene import analyze_scene
from skyeye.scene.cli import main

EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"
FORCED = "<p> the lake </p> [SEG]"
SIZE = (80, 112)  # rows, cols: 6 windows of 48 px overlapping by 16


def _pixels() -> tuple[np.ndarray, dict, tuple]:
    """A real 13-band Sentinel-2 crop, its profile and band descriptions."""
    window = rasterio.windows.Window(120, 140, SIZE[1], SIZE[0])
    with rasterio.open(EXAMPLE) as src:
        data = src.read(window=window)
        profile = src.profile | {
            "height": SIZE[0],
            "width": SIZE[1],
            "transform": src.window_transform(window),
            "tiled": False,
        }
        descriptions = src.descriptions
    for key in ("blockxsize", "blockysize"):
        profile.pop(key, None)
    return data, profile, descriptions


def _write(path: Path, data: np.ndarray, profile: dict, descriptions: tuple) -> Path:
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    data, profile, descriptions = _pixels()
    return _write(tmp_path_factory.mktemp("s") / "crop.tif", data, profile, descriptions)


def _run(source, out, session, prompt="segment the lake", **kw):
    kw = {"window": 48, "overlap": 16, "batch": 4, "progress": False, "force_answer": FORCED} | kw
    return analyze_scene(source, prompt, out, model=session, **kw)


def test_another_prompt_or_a_rewritten_source_recomputes_every_window(
    scene, session, tmp_path, caplog
):
    out = tmp_path / "out"
    first = _run(scene, out, session)
    assert first.windows_run == first.windows_total == 6
    with caplog.at_level("WARNING"):
        forest = _run(scene, out, session, prompt="segment the forest")
    assert forest.windows_run == 6 and forest.answer["prompt"] == "segment the forest"
    assert "of another run (changed: the prompt)" in caplog.text
    assert _run(scene, out, session, prompt="segment the forest").windows_run == 0
    # Same size, same mtime, other pixels (a copy that kept the timestamp): not the same scene.
    copy = tmp_path / "copy.tif"
    data, profile, descriptions = _pixels()
    profile.pop("compress", None)  # uncompressed: other pixels, the same size
    _write(copy, data, profile, descriptions)
    _run(copy, tmp_path / "c", session)
    stat = copy.stat()
    _write(copy, data[:, ::-1].copy(), profile, descriptions)
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert copy.stat().st_size == stat.st_size
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert _run(copy, tmp_path / "c", session).windows_run == 6
    assert "the source files" in caplog.text


def test_another_loaded_model_never_gets_the_first_models_windows(scene, session, tmp_path, caplog):
    import copy

    import torch

    from skyeye.chat.session import ChatSession

    out = tmp_path / "out"
    assert _run(scene, out, session).windows_run == 6
    # The chat passes its loaded model, which has no folder: only the weights tell them apart.
    other = copy.deepcopy(session.model)
    with torch.no_grad():
        next(other.mask_head.parameters()).add_(0.5)
    with caplog.at_level("WARNING"):
        assert _run(scene, out, ChatSession(other, session.processor)).windows_run == 6
    assert "changed: the model" in caplog.text
    assert _run(scene, out, ChatSession(other, session.processor)).windows_run == 0


_HOLDER = """
import pathlib, sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from skyeye_testing import build_tiny_llm, make_tiny_model
from skyeye.chat.session import ChatSession
from skyeye.scene import analyze_scene
model, processor = make_tiny_model(build_tiny_llm(pathlib.Path({llm!r})),
                                   use_mask_head=True, mask_head_hidden_size=32)
model.eval()

def wait(done, total):  # hold the run (and its lock) until the test says go
    pathlib.Path({started!r}).touch()
    while not pathlib.Path({go!r}).exists():
        time.sleep(0.05)

analyze_scene({scene!r}, "segment the water", {out!r}, model=ChatSession(model, processor),
              window=48, overlap=16, batch=4, progress=False, force_answer={forced!r},
              progress_callback=wait)
"""


def test_a_second_run_on_one_out_exits_2_naming_the_first(scene, tmp_path, capsys):
    out, started, go = tmp_path / "out", tmp_path / "started", tmp_path / "go"
    code = _HOLDER.format(
        tests=str(REPO / "tests"), llm=str(tmp_path / "llm"), scene=str(scene), out=str(out),
        forced=FORCED, started=str(started), go=str(go),
    )  # fmt: skip
    first = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, stderr=subprocess.PIPE,
        env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not started.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert started.exists(), first.stderr.read() if first.stderr else ""
        argv = ["--image", str(scene), "--prompt", "segment the forest", "--out", str(out),
                "--window", "48", "--overlap", "16", "--force-answer", FORCED]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{out} is in use by another run" in err
        assert f"pid {first.pid} on {socket.gethostname()}, started " in err
        # No window of the refused run reached the first one's store.
        work = json.loads((out / ".scene-work" / "state.json").read_text())
        assert work["prompt"] == "segment the water"
    finally:
        go.touch()
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    answer = json.loads((out / "answer.json").read_text())
    assert answer["prompt"] == "segment the water" and len(answer["windows"]) == 6


def test_a_rotated_geotiff_runs_on_its_own_grid(session, tmp_path):
    import shapely
    from pyogrio import read_dataframe

    data, profile, descriptions = _pixels()
    north_up = _write(tmp_path / "north.tif", data, profile, descriptions)
    origin = profile["transform"] @ (0, 0)
    rotated_t = Affine.translation(*origin) @ Affine.rotation(-25) @ Affine.scale(10, -10)
    assert rotated_t.b != 0 and rotated_t.d != 0
    rotated = _write(tmp_path / "rot.tif", data, profile | {"transform": rotated_t}, descriptions)
    a = _run(north_up, tmp_path / "a", session)
    b = _run(rotated, tmp_path / "b", session)
    assert b.windows_run == 6
    with rasterio.open(a.paths["mask"]) as ma, rasterio.open(b.paths["mask"]) as mb:
        assert mb.transform.almost_equals(rotated_t) and mb.crs == ma.crs
        assert (mb.height, mb.width) == SIZE
        mask_a, mask_b = ma.read(1), mb.read(1)
    # The model saw the same pixels: the same mask, on the rotated grid.
    assert np.array_equal(mask_a, mask_b) and 0 < (mask_b == 1).sum() < mask_b.size
    assert b.answer["mask"]["area_m2"] == pytest.approx(100.0 * (mask_b == 1).sum())
    assert b.answer["scene"]["pixel_size"] == pytest.approx([10.0, 10.0])
    # Polygons (GeoPackage, native CRS): the north-up ones moved by the rotation.
    to_rotated = rotated_t @ ~profile["transform"]
    geoms_a = read_dataframe(a.paths["gpkg"]).geometry.union_all()
    geoms_b = read_dataframe(b.paths["gpkg"]).geometry.union_all()
    moved = shapely.affinity.affine_transform(geoms_a, to_rotated.to_shapely())
    assert geoms_b.area > 0
    assert moved.symmetric_difference(geoms_b).area < 1e-6 * geoms_b.area
    # GeoJSON (EPSG:4326): inside the rotated footprint.
    from rasterio.warp import transform_geom

    corners = [rotated_t @ c for c in ((0, 0), (SIZE[1], 0), (SIZE[1], SIZE[0]), (0, SIZE[0]))]
    footprint = shapely.geometry.shape(
        transform_geom(profile["crs"], "EPSG:4326", shapely.geometry.Polygon(corners))
    )
    lonlat = read_dataframe(b.paths["geojson"])
    assert lonlat.crs.to_epsg() == 4326 and len(lonlat) == b.answer["mask"]["polygons"]
    assert footprint.buffer(1e-6).contains(lonlat.geometry.union_all())


def test_a_png_runs_without_sensor_on_pixel_coordinates(session, tmp_path, capsys):
    from pyogrio import read_dataframe

    data, _, _ = _pixels()
    rgb = np.clip(data[[3, 2, 1]].astype(np.float32) / 8, 0, 255).astype(np.uint8)  # B04 B03 B02
    png = tmp_path / "photo.png"
    Image.fromarray(np.moveaxis(rgb, 0, -1)).save(png)
    folder = tmp_path / "model"
    session.model.save_pretrained(folder, processor=session.processor)
    argv = ["--model", str(folder), "--image", str(png), "--prompt", "segment the lake",
            "--out", str(tmp_path / "out"), "--window", "48", "--overlap", "16",
            "--force-answer", FORCED, "--no-progress", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    answer = json.loads((tmp_path / "out" / "answer.json").read_text())
    assert answer["scene"]["sensor"] == "rgb" and answer["scene"]["crs"] is None
    assert answer["mask"]["area_m2"] is None and len(answer["windows"]) == 6
    with rasterio.open(tmp_path / "out" / "mask.tif") as m:
        assert (m.height, m.width) == SIZE and m.crs is None
        mask = m.read(1)
    assert (mask != 255).all() and answer["mask"]["pixels"] == int((mask == 1).sum())
    # No GeoJSON (always lon/lat); the GeoPackage in pixel coordinates: x = column, y = row.
    assert not (tmp_path / "out" / "mask.geojson").exists() and "geojson" not in answer["outputs"]
    polygons = read_dataframe(tmp_path / "out" / "mask.gpkg")
    assert polygons.crs is None and len(polygons) == answer["mask"]["polygons"] > 0
    minx, miny, maxx, maxy = polygons.total_bounds
    assert 0 <= minx <= maxx <= SIZE[1] and 0 <= miny <= maxy <= SIZE[0]


def test_every_output_file_gets_the_mode_the_umask_gives(scene, session, tmp_path):
    old = os.umask(0o027)
    try:
        result = _run(scene, tmp_path / "out", session)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    modes = {p.relative_to(tmp_path / "out").as_posix(): p.stat().st_mode & 0o777 for p in files}
    assert {p.name for p in result.paths.values()} <= set(modes)
    assert set(modes.values()) == {0o640}, modes
    assert ((tmp_path / "out" / ".scene-work").stat().st_mode & 0o777) == 0o750


def test_the_amount_is_the_measured_share_where_a_mask_is_drawn(scene, session, tmp_path):
    # The windows' percentages are the LLM's words: beside a measured mask they are not an amount.
    said = "About 10% of the image is water."
    drawn = _run(scene, tmp_path / "a", session, force_answer=f"<p> water </p> [SEG] {said}")
    assert drawn.answer["amount_percent"] is None
    assert drawn.answer["mask"]["pixels"] > 0
    area = format_area(drawn.answer["mask"]["area_m2"])  # the chat's units: m², ha or km²
    assert drawn.answer["answer"].startswith(f"Found water over {area} (")
    words = _run(scene, tmp_path / "b", session, force_answer=said)
    assert words.answer["amount_percent"] == 10.0
    assert "mean of the windows' answers" in words.answer["answer"]


def test_an_image_the_model_cannot_take_fails_before_the_model_loads_and_writes_nothing(
    tmp_path, capsys
):
    path = tmp_path / "four.tif"
    profile = dict(driver="GTiff", width=32, height=32, count=4, dtype="uint16",
                   crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5800000))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((4, 32, 32), np.uint16))  # four bands, no names, no sensor
    out = tmp_path / "out"
    argv = ["--image", str(path), "--prompt", "Is there water?", "--out", str(out)]
    started = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - started < 20  # no model load before the one-line error
    err = capsys.readouterr().err
    assert "missing wavelengths for bands" in err and "--sensor, one of" in err
    assert not out.exists()  # no lock, no work folder left behind
