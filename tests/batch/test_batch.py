"""`python -m skyeye.batch`: inputs, the plain loop, and Ray with 2 workers killed and restarted."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.windows import Window
from skyeye_testing import make_tiny_model

from skyeye.batch.cli import main
from skyeye.batch.inputs import collect_scenes

REPO = Path(__file__).resolve().parents[2]
BIGEARTHNET = REPO / "tests" / "fixtures" / "batch" / "bigearthnet_s2"
EXAMPLES = REPO / "examples"


def _crop(src_path: Path, out: Path, col: int, row: int, size: int = 96) -> Path:
    """A real sub-scene: a window of an example raster, pixel values and georeference kept."""
    with rasterio.open(src_path) as src:
        window = Window(col, row, size, size)
        profile = {**src.profile, "width": size, "height": size}
        profile["transform"] = src.window_transform(window)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    return out


@pytest.fixture
def scenes_folder(tmp_path) -> Path:
    """4 BigEarthNet patches (band folders), 2 crops of the Sentinel-2 example, the example's
    STAC item (a file:// href to its GeoTIFF) and one corrupt GeoTIFF."""
    folder = tmp_path / "scenes"
    folder.mkdir()
    for patch in sorted(p for p in BIGEARTHNET.iterdir() if p.is_dir()):
        (folder / patch.name).symlink_to(patch, target_is_directory=True)
    _crop(EXAMPLES / "sentinel2_berlin_l1c.tif", folder / "berlin_lake.tif", 160, 160)
    _crop(EXAMPLES / "sentinel2_berlin_l1c.tif", folder / "berlin_fields.tif", 400, 400)
    item = json.loads((EXAMPLES / "sentinel2_berlin_l1c.stac.json").read_text())
    item["assets"]["data"]["href"] = (EXAMPLES / "sentinel2_berlin_l1c.tif").as_uri()
    (folder / "berlin.stac.json").write_text(json.dumps(item))
    (folder / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00garbage" * 50)
    return folder


@pytest.fixture
def tiny_folder(tiny_llm_dir, tmp_path):
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    model.save_pretrained(tmp_path / "model", processor=processor)
    return tmp_path / "model"


def _name(key: str) -> str:
    """A scene key without its path hash (``berlin_lake-1a2b3c4d`` -> ``berlin_lake``)."""
    name, digest = key.rsplit("-", 1)
    assert re.fullmatch(r"[0-9a-f]{8}", digest), key
    return name


def test_inputs_folder_list_glob_and_item_collection(scenes_folder, tmp_path):
    from skyeye.batch.inputs import scene_key

    keys = [s.key for s in collect_scenes(str(scenes_folder))]
    names = {_name(k) for k in keys}
    assert len(keys) == len(names) == 8 and {"corrupt", "berlin_lake"} <= names
    listing = tmp_path / "list.txt"
    listing.write_text("# two scenes\nscenes/berlin_lake.tif\nscenes/berlin.stac.json\n")
    listed = collect_scenes(str(listing))
    stac_id = "S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU_crop1024-128"
    assert [s.key for s in listed] == [
        scene_key("berlin_lake", "scenes/berlin_lake.tif"),
        scene_key(stac_id, f"scenes/berlin.stac.json#{stac_id}"),
    ]
    assert listed[1].datetime == "2017-02-16T10:21:01Z" and listed[1].geometry["type"] == "Polygon"
    assert len(collect_scenes(str(scenes_folder / "berlin_*.tif"))) == 2
    item = json.loads((EXAMPLES / "sentinel2_berlin_l1c.stac.json").read_text())
    item["assets"]["data"]["href"] = str(EXAMPLES / "sentinel2_berlin_l1c.tif")
    remote = {
        **item,
        "id": "remote",
        "assets": {"data": {**item["assets"]["data"], "href": "https://x/y.tif"}},
    }
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": [item, remote]}))
    resolved = collect_scenes(str(collection))
    assert resolved[0].error is None and "cannot fetch remote asset" in resolved[1].error
    with pytest.raises(ValueError, match="no scenes found"):
        collect_scenes(str(tmp_path / "nothing-*.tif"))


def test_plain_loop_writes_outputs_and_a_geopackage_summary(
    scenes_folder, tiny_folder, tmp_path, capsys
):
    listing = tmp_path / "two.txt"
    listing.write_text("scenes/berlin_lake.tif\nscenes/corrupt.tif\n")
    out = tmp_path / "out"
    args = ["--inputs", str(listing), "--prompt", "segment the lake", "--out", str(out),
            "--model", str(tiny_folder), "--workers", "0", "--format", "gpkg", "--max-new-tokens", "4"]  # fmt: skip
    assert main(args) == 0
    table = gpd.read_file(out / "summary.gpkg")
    rows = {_name(r.key): r for r in table.itertuples()}
    assert rows["berlin_lake"].status == "done" and rows["berlin_lake"].answer
    assert rows["corrupt"].status == "failed" and "corrupt.tif" in rows["corrupt"].reason
    assert (out / "scenes" / rows["berlin_lake"].key / "answer.json").is_file()
    lon, lat = rows["berlin_lake"].geometry.centroid.coords[0]
    assert 12.6 < lon < 12.8 and 52.4 < lat < 52.6
    assert "1 failed" in capsys.readouterr().err


def _batch_cmd(folder: Path, out: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "skyeye.batch", "--inputs", str(folder), "--prompt", "segment the lake",
            "--out", str(out), "--model", str(model), "--workers", "2", "--threads", "1",
            "--window", "32", "--overlap", "0", "--max-new-tokens", "4"]  # fmt: skip


def _snapshot(path: Path) -> gpd.GeoDataFrame:
    """The summary as one file: its bytes read in one open. The batch replaces it (atomically)
    while the test polls, and pyarrow's path reader takes the size and the bytes in two steps,
    so it could read the new file at the old one's size ("Couldn't deserialize thrift")."""
    return gpd.read_parquet(io.BytesIO(path.read_bytes()))


@pytest.mark.slow
def test_ray_batch_killed_halfway_then_restarted_does_only_the_rest(
    scenes_folder, tiny_folder, tmp_path
):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _batch_cmd(scenes_folder, out, tiny_folder), cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 240
    summary = out / "summary.parquet"  # rewritten (atomically) as each scene finishes
    while time.time() < deadline:
        if summary.exists() and (_snapshot(summary).status == "done").sum() >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray cluster it started
    proc.wait()
    partial = _snapshot(summary)  # what the kill left: the scenes finished until then
    assert (partial.status == "done").sum() >= 2
    # Ray's workers notice their driver is gone within seconds; a scene they were finishing may
    # still land meanwhile: count the done scenes once nothing changes any more.
    done_before: dict[str, int] = {}
    stable_since = time.time()
    while time.time() - stable_since < 5:
        now = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("scenes/*/answer.json")}
        if now != done_before:
            done_before, stable_since = now, time.time()
        time.sleep(0.2)
    assert 2 <= len(done_before) < 7, "the batch was not killed halfway"
    assert set(partial.key[partial.status == "done"]) <= set(done_before)

    rerun = subprocess.run(
        _batch_cmd(scenes_folder, out, tiny_folder), cwd=REPO, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"({len(done_before)} from an earlier run)" in rerun.stderr
    for key, mtime in done_before.items():  # not redone
        assert (out / "scenes" / key / "answer.json").stat().st_mtime_ns == mtime
    table = gpd.read_parquet(out / "summary.parquet")
    assert len(table) == 8 and table.crs.to_epsg() == 4326
    failed = table[table.status == "failed"]
    assert [_name(k) for k in failed.key] == ["corrupt"] and "corrupt.tif" in failed.reason.iloc[0]
    done = table[table.status == "done"]
    assert len(done) == 7 and done.geometry.notna().all() and done.answer.notna().all()
    stac = done[done.scene_id.str.startswith("S2A_MSIL1C_20170216T102101")]
    assert list(stac.datetime) == ["2017-02-16T10:21:01Z"]
    for key in done.key:
        assert (out / "scenes" / key / "mask.tif").is_file()


@pytest.mark.slow
def test_ray_workers_write_the_plain_loop_s_outputs_byte_for_byte(
    scenes_folder, tiny_folder, tmp_path
):
    """Ray's 2 workers (1 torch thread each, the model loaded once per worker) against the plain
    loop (torch's default threads): every scene's files equal, answer.json up to its timings."""
    from skyeye.batch.runner import run_local, run_ray

    scenes = collect_scenes(str(scenes_folder))
    options = {"max_new_tokens": 4, "window": 48, "overlap": 8}
    args = (PROMPT_LAKE, str(tiny_folder), options)
    loop = run_local(scenes, tmp_path / "loop", *args, progress=False)
    ray_run = run_ray(scenes, tmp_path / "ray", *args, workers=2, threads=1, progress=False)
    assert ray_run.ran == loop.ran == 8 and len(ray_run.load_seconds) == 2
    assert [r["key"] for r in loop.failed] == [r["key"] for r in ray_run.failed]
    assert len(loop.failed) == 1  # the corrupt GeoTIFF
    compared = 0
    for folder in sorted((tmp_path / "loop" / "scenes").iterdir()):
        twin = tmp_path / "ray" / "scenes" / folder.name
        files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name[0] != ".")
        assert files == sorted(p.name for p in twin.iterdir() if p.is_file() and p.name[0] != ".")
        for name in files:
            mine, theirs = (folder / name).read_bytes(), (twin / name).read_bytes()
            if name == "answer.json":
                mine, theirs = (json.loads(t) for t in (mine, theirs))
                assert mine.pop("timings_s") and theirs.pop("timings_s")
            elif name.endswith(".gpkg"):  # GeoPackage stamps its tables with the time written
                mine, theirs = (re.sub(GPKG_TIME, b"<time>", t) for t in (mine, theirs))
            assert mine == theirs, f"{folder.name}/{name} differs"
            compared += 1
    assert compared >= 7 * 6  # 7 scenes done, their mask, polygons, preview, answer, run


PROMPT_LAKE = "segment the lake"
#: gpkg_contents.last_change and the like, e.g. 2026-12-06T06:10:17.123Z
GPKG_TIME = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"


def _loop(inputs: Path, out: Path, model: Path, prompt: str = "segment the lake") -> int:
    return main(["--inputs", str(inputs), "--prompt", prompt, "--out", str(out),
                 "--model", str(model), "--workers", "0", "--max-new-tokens", "4",
                 "--window", "48", "--overlap", "0"])  # fmt: skip


def _summary_line(err: str) -> str:
    return next(line for line in err.splitlines() if "from an earlier run" in line)


def test_a_rerun_with_another_prompt_or_a_rewritten_file_recomputes(
    tiny_folder, tmp_path, capsys, caplog
):
    folder, out = tmp_path / "scenes", tmp_path / "out"
    folder.mkdir()
    _crop(EXAMPLES / "sentinel2_berlin_l1c.tif", folder / "lake.tif", 160, 160)
    _crop(EXAMPLES / "sentinel2_berlin_l1c.tif", folder / "fields.tif", 400, 400)
    assert _loop(folder, out, tiny_folder) == 0
    assert "2 done (0 from an earlier run)" in _summary_line(capsys.readouterr().err)
    assert _loop(folder, out, tiny_folder) == 0
    assert "2 done (2 from an earlier run)" in _summary_line(capsys.readouterr().err)
    with caplog.at_level("WARNING"):
        assert _loop(folder, out, tiny_folder, prompt="segment the forest") == 0
    assert "2 done (0 from an earlier run)" in _summary_line(capsys.readouterr().err)
    assert caplog.text.count("is of another run (changed: the prompt): analysing it again") == 2
    answers = [json.loads(p.read_text()) for p in out.glob("scenes/*/answer.json")]
    assert [a["prompt"] for a in answers] == ["segment the forest"] * 2
    # The same file name, other pixels: recomputed; the other scene is not.
    _crop(EXAMPLES / "sentinel2_berlin_l1c.tif", folder / "fields.tif", 300, 420)
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert _loop(folder, out, tiny_folder, prompt="segment the forest") == 0
    assert "2 done (1 from an earlier run)" in _summary_line(capsys.readouterr().err)
    assert "fields.tif" in caplog.text and "changed: the source files" in caplog.text


def test_the_summary_is_rewritten_in_input_order_as_each_scene_finishes(
    tiny_folder, tmp_path, monkeypatch
):
    from skyeye.batch.runner import run_local, run_ray
    from skyeye.batch.summary import SummaryFile

    folder, out = tmp_path / "scenes", tmp_path / "out"
    folder.mkdir()
    _crop(EXAMPLES / "sentinel2_berlin_l1c.tif", folder / "lake.tif", 160, 160)
    _crop(EXAMPLES / "sentinel2_berlin_l1c.tif", folder / "fields.tif", 400, 400)
    (folder / "notes.txt").write_text("field notes")
    scenes = collect_scenes(str(folder))
    summary = SummaryFile(out / "summary.parquet", scenes)
    seen = []

    def on_rows(rows):
        summary.add(rows)  # what a kill right after this call would leave on disk
        table = gpd.read_parquet(out / "summary.parquet")
        seen.append([(_name(k), status) for k, status in zip(table.key, table.status, strict=True)])

    options = {"max_new_tokens": 4, "window": 48, "overlap": 0}
    run_local(scenes, out, PROMPT_LAKE, str(tiny_folder), options, progress=False, on_rows=on_rows)
    assert seen == [
        [("notes", "skipped")],
        [("fields", "done"), ("notes", "skipped")],
        [("fields", "done"), ("lake", "done"), ("notes", "skipped")],
    ]
    # Run again on Ray: every answer is there with this run's identity, so no Ray starts.
    import ray

    monkeypatch.setattr(ray, "init", lambda **_: pytest.fail("Ray started for a finished batch"))
    again = run_ray(scenes, out, PROMPT_LAKE, str(tiny_folder), options, on_rows=on_rows)
    assert (again.ran, again.skipped, len(again.rows)) == (0, 2, 3)
    assert seen[-1] == seen[-2]


def test_adding_a_file_keeps_every_other_scene_s_folder_and_answer(tiny_folder, tmp_path, capsys):
    folder, out = tmp_path / "scenes", tmp_path / "out"
    folder.mkdir()
    _crop(EXAMPLES / "sentinel2_berlin_l1c.tif", folder / "berlin_lake.tif", 160, 160)
    assert _loop(folder, out, tiny_folder) == 0
    (before,) = gpd.read_parquet(out / "summary.parquet").itertuples()
    stamp = (out / "scenes" / before.key / "answer.json").stat().st_mtime_ns
    # A photo of the same name sorts first: it must not take the GeoTIFF's folder or answer.
    with rasterio.open(EXAMPLES / "sentinel2_berlin_l1c.tif") as src:
        rgb = src.read([4, 3, 2], window=Window(400, 400, 96, 96)).astype("float32") / 8
    Image.fromarray(np.moveaxis(np.clip(rgb, 0, 255).astype(np.uint8), 0, -1)).save(
        folder / "berlin_lake.png"
    )
    capsys.readouterr()
    assert _loop(folder, out, tiny_folder) == 0
    assert "2 done (1 from an earlier run)" in _summary_line(capsys.readouterr().err)
    rows = {r.source: r for r in gpd.read_parquet(out / "summary.parquet").itertuples()}
    tif, png = rows[str(folder / "berlin_lake.tif")], rows[str(folder / "berlin_lake.png")]
    assert tif.key == before.key and tif.area_m2 == before.area_m2 and tif.answer == before.answer
    assert (out / "scenes" / tif.key / "answer.json").stat().st_mtime_ns == stamp
    assert png.key != tif.key and png.status == "done" and np.isnan(png.area_m2)  # no CRS
    answer = json.loads((out / "scenes" / png.key / "answer.json").read_text())
    assert answer["scene"]["source"] == str(folder / "berlin_lake.png")


def test_every_folder_entry_gets_a_row_and_links_never_loop(tiny_folder, tmp_path, capsys):
    folder, out = tmp_path / "scenes", tmp_path / "out"
    folder.mkdir()
    _crop(EXAMPLES / "sentinel2_berlin_l1c.tif", folder / "berlin_lake.tif", 160, 160)
    (folder / "loop_a").symlink_to(folder / "loop_b")
    (folder / "loop_b").symlink_to(folder / "loop_a")
    (folder / "dangling.tif").symlink_to(folder / "missing.tif")
    (folder / "dirloop").symlink_to(".", target_is_directory=True)
    (folder / "notes.txt").write_text("field notes")
    (folder / "empty").mkdir()
    (folder / ".hidden.tif").write_bytes(b"")
    expected = {
        "berlin_lake.tif": ("done", None),
        "loop_a": ("failed", "a symbolic link loop"),
        "loop_b": ("failed", "a symbolic link loop"),
        "dangling.tif": ("failed", "a dangling symbolic link"),
        "dirloop": ("skipped", "links back to the input folder"),
        "notes.txt": ("skipped", "not a raster"),
        "empty": ("skipped", "a folder without band files"),
    }
    if os.geteuid() != 0:  # root reads everything: the unreadable case needs another user
        locked = folder / "locked"
        locked.mkdir()
        _crop(EXAMPLES / "sentinel2_berlin_l1c.tif", locked / "B01.tif", 0, 0, 16)
        locked.chmod(0)
        expected["locked"] = ("failed", "cannot list the folder")
    try:
        assert _loop(folder, out, tiny_folder) == 0
    finally:
        if os.geteuid() != 0:
            (folder / "locked").chmod(0o755)
    err = capsys.readouterr().err
    n_failed = sum(status == "failed" for status, _ in expected.values())
    assert (
        f"{len(expected)} entries: 1 done (0 from an earlier run), {n_failed} failed, "
        "3 not scenes" in _summary_line(err)
    )
    table = gpd.read_parquet(out / "summary.parquet")
    rows = {Path(r.source).name: r for r in table.itertuples()}
    assert set(rows) == set(expected)
    for name, (status, reason) in expected.items():
        assert rows[name].status == status, (name, rows[name].reason)
        assert reason is None or reason in rows[name].reason, (name, rows[name].reason)
    assert len(list(out.glob("scenes/*/answer.json"))) == 1


def test_a_second_batch_on_one_out_exits_2_naming_the_first(tmp_path, capsys):
    import socket

    from skyeye.scene.lock import RunLock

    folder, out = tmp_path / "scenes", tmp_path / "out"
    folder.mkdir()
    _crop(EXAMPLES / "sentinel2_berlin_l1c.tif", folder / "berlin_lake.tif", 160, 160)
    with RunLock(out, "skyeye.batch"):  # the first batch (its own open file: a separate lock)
        assert _loop(folder, out, tmp_path / "no-model-needed") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out} is in use by another run (skyeye.batch" in err
    assert f"pid {os.getpid()} on {socket.gethostname()}, started " in err
    assert not (out / "scenes").exists()


def test_threads_below_one_exit_2_with_one_line(tmp_path, capsys):
    args = ["--inputs", str(EXAMPLES), "--prompt", "water?", "--out", str(tmp_path / "out"),
            "--threads", "0"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --threads must be 1 or more (leave it out for the default)"
    assert not (tmp_path / "out").exists()
