"""`python -m skyeye.batch`: inputs, the plain loop, and Ray with 2 workers killed and restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
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


def test_inputs_folder_list_glob_and_item_collection(scenes_folder, tmp_path):
    keys = [s.key for s in collect_scenes(str(scenes_folder))]
    assert len(keys) == 8 and "corrupt" in keys and "berlin_lake" in keys
    listing = tmp_path / "list.txt"
    listing.write_text("# two scenes\nscenes/berlin_lake.tif\nscenes/berlin.stac.json\n")
    listed = collect_scenes(str(listing))
    assert [s.key for s in listed] == [
        "berlin_lake",
        "S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU_crop1024-128",
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
    rows = {r.key: r for r in table.itertuples()}
    assert rows["berlin_lake"].status == "done" and rows["berlin_lake"].answer
    assert rows["corrupt"].status == "failed" and "corrupt.tif" in rows["corrupt"].reason
    assert (out / "scenes" / "berlin_lake" / "answer.json").is_file()
    lon, lat = rows["berlin_lake"].geometry.centroid.coords[0]
    assert 12.6 < lon < 12.8 and 52.4 < lat < 52.6
    assert "1 failed" in capsys.readouterr().err


def _batch_cmd(folder: Path, out: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "skyeye.batch", "--inputs", str(folder), "--prompt", "segment the lake",
            "--out", str(out), "--model", str(model), "--workers", "2", "--threads", "1",
            "--window", "32", "--overlap", "0", "--max-new-tokens", "4"]  # fmt: skip


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
    while len(list(out.glob("scenes/*/answer.json"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray cluster it started
    proc.wait()
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
    assert not (out / "summary.parquet").exists()

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
    assert list(failed.key) == ["corrupt"] and "corrupt.tif" in failed.reason.iloc[0]
    done = table[table.status == "done"]
    assert len(done) == 7 and done.geometry.notna().all() and done.answer.notna().all()
    stac = done[done.scene_id.str.startswith("S2A_MSIL1C_20170216T102101")]
    assert list(stac.datetime) == ["2017-02-16T10:21:01Z"]
    for key in done.key:
        assert (out / "scenes" / key / "mask.tif").is_file()
