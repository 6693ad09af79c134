"""The scene pipeline's parts, each alone: SceneConfig, the batches of the layout, the
prefetching reader, the window runner and the writer."""

from __future__ import annotations

import dataclasses
import json
import threading
import typing
from pathlib import Path

import numpy as np
import pytest
import rasterio
from skyeye_testing import REPO

from skyeye.errors import SceneError
from skyeye.scene import SceneConfig, analyze_scene
from skyeye.scene.reader import PrefetchReader
from skyeye.scene.runner import SceneRunner
from skyeye.scene.source import SceneSource
from skyeye.scene.stitch import INSIDE
from skyeye.scene.store import WindowStore
from skyeye.scene.windows import SceneWindow, pending_batches, window_layout
from skyeye.scene.writer import OUTPUT_NAMES, SceneWriter

EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"


# ------------------------------------------------------------------ config
def test_every_config_field_has_help_and_options_are_literals():
    fields = dataclasses.fields(SceneConfig)
    assert [f.name for f in fields if not f.metadata.get("help")] == []
    hints = typing.get_type_hints(SceneConfig)
    assert typing.get_args(hints["crs"]) == ("4326", "native")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"crs": "3857"}, "crs must be"),
        ({"batch": 0}, "--batch"),
        ({"window": 64, "overlap": 64}, "--overlap"),
        ({"overlap": -1}, "--overlap"),
    ],
)
def test_a_bad_config_is_refused_when_made(change, message):
    with pytest.raises(SceneError, match=message):
        SceneConfig(**change)
    with pytest.raises(SceneError, match=message):
        SceneConfig().replace(**change)


def test_replace_names_a_field_that_is_not_one():
    with pytest.raises(TypeError, match="windw"):
        SceneConfig().replace(windw=3)
    with pytest.raises(TypeError, match="windw"):
        analyze_scene(EXAMPLE, "segment the lake", "unused", windw=3)


# ------------------------------------------------------------------ layout batches
def test_batches_are_the_layout_s_fixed_groups_less_the_finished_windows():
    windows = window_layout(100, 100, 40, 10)  # 3 x 3
    done = {0, 1, 2, 4}
    batches = pending_batches(windows, 4, lambda i: i in done)
    assert [[w.index for w in b] for b in batches] == [[3], [5, 6, 7], [8]]
    assert pending_batches(windows, 4, lambda i: True) == []


# ------------------------------------------------------------------ reader
def test_the_reader_reads_in_order_and_one_batch_ahead_only_when_told():
    windows = [SceneWindow(i, 0, i, 1, 1) for i in range(5)]
    batches = [windows[0:2], windows[2:4], windows[4:5]]
    started: list[int] = []
    gate = threading.Event()

    def read(w: SceneWindow) -> np.ndarray:
        started.append(w.index)
        if w.index >= 2:
            gate.wait(5)
        return np.full((1, 1, 1), w.index, np.float32)

    seen = []
    with PrefetchReader(read, batches) as reader:
        for k, (batch, data) in enumerate(reader):
            seen.append(([w.index for w in batch], [int(d[0, 0, 0]) for d in data]))
            if k == 0:
                # Not asked to read ahead yet: the second batch has not started.
                assert started == [0, 1]
                reader.read_ahead()
                reader.read_ahead()  # at most one batch in flight
                gate.set()
    assert seen == [([0, 1], [0, 1]), ([2, 3], [2, 3]), ([4], [4])]
    assert started == [0, 1, 2, 3, 4]
    assert reader.wait_s >= 0


def test_a_read_error_reaches_the_caller():
    def read(w: SceneWindow) -> np.ndarray:
        raise OSError(f"cannot read window {w.index}")

    with (
        pytest.raises(OSError, match="window 0"),
        PrefetchReader(read, [[SceneWindow(0, 0, 0, 1, 1)]]) as r,
    ):
        list(r)


# ------------------------------------------------------------------ runner
def _scene_file(tmp_path: Path, nodata_all: bool = False) -> Path:
    path = tmp_path / "s2.tif"
    window = rasterio.windows.Window(100, 100, 64, 48)
    with rasterio.open(EXAMPLE) as src:
        data = src.read(window=window)
        profile = src.profile | {"height": 48, "width": 64, "nodata": 0, "tiled": False,
                                 "transform": src.window_transform(window)}  # fmt: skip
        descriptions = src.descriptions
    for key in ("blockxsize", "blockysize"):
        profile.pop(key, None)
    if nodata_all:
        data[:] = 0
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
    return path


def test_all_nodata_windows_are_skipped_without_opening_the_model(tmp_path):
    config = SceneConfig(window=32, overlap=0, batch=4, progress=False)
    with SceneSource(_scene_file(tmp_path, nodata_all=True)) as scene:
        store = WindowStore(tmp_path / "work", {"id": "x"})
        # A model that cannot be opened: the runner must never try.
        runner = SceneRunner("no-such-model", "segment the lake", config, scene, store)
        windows = window_layout(scene.grid.height, scene.grid.width, 32, 0)
        with PrefetchReader(lambda w: scene.read(w.row, w.col, w.height, w.width), [windows]) as r:
            runner.run(r)
    assert (runner.windows_run, runner.windows_done) == (0, len(windows))
    assert all(store.record(w.index)["skipped"] for w in windows)


def test_the_runner_answers_live_windows_and_saves_each(tmp_path, session):
    config = SceneConfig(window=32, overlap=8, batch=3, progress=False,
                         force_answer="<p>lake</p> [SEG]")  # fmt: skip
    with SceneSource(_scene_file(tmp_path)) as scene:
        store = WindowStore(tmp_path / "work", {"id": "x"})
        runner = SceneRunner(session, "segment the lake", config, scene, store)
        windows = window_layout(scene.grid.height, scene.grid.width, 32, 8)
        data = [scene.read(w.row, w.col, w.height, w.width) for w in windows[:3]]
        data[1][:] = np.nan  # an all-nodata window among live ones
        prepared = runner.prepare(windows[:3], data)
        assert prepared.live == [0, 2]
        answers = runner.answer(prepared)
        assert sorted(answers) == [0, 2]
        runner.save(prepared, answers)
        runner.close()
    assert store.record(1)["skipped"] is True
    for i in (0, 2):
        record, arrays = store.record(i), store.arrays(i)
        assert record["answer"] == "<p>lake</p> [SEG]" and record["phrase"] == "lake"
        assert arrays["prob"].shape == (32, 32) and arrays["prob"].dtype == np.float16
        assert record["valid_pixels"] == 32 * 32
    assert runner.windows_run == 2 and runner.model_s > 0


def test_a_window_smaller_than_the_tower_s_patch_is_refused(tmp_path, session):
    config = SceneConfig(window=2, overlap=0, progress=False, force_answer="[SEG]")
    with SceneSource(_scene_file(tmp_path)) as scene:
        runner = SceneRunner(session, "x", config, scene, WindowStore(tmp_path / "w", {"id": "x"}))
        data = [scene.read(0, 0, 2, 2)]
        with pytest.raises(SceneError, match="smaller than the tower's patch"):
            runner.prepare([SceneWindow(0, 0, 0, 2, 2)], data)


# ------------------------------------------------------------------ writer
def test_the_writer_derives_every_output_from_the_store_alone(tmp_path):
    """A store filled by hand (no model, no scene pixels read): one window says water on its
    left half, the other is nodata."""
    with SceneSource(_scene_file(tmp_path)) as scene:
        grid = scene.grid
        windows = window_layout(grid.height, grid.width, 32, 0)  # 2 x 2 on 48 x 64
        store = WindowStore(tmp_path / "out" / ".scene-work", {"id": "run1"})
        for w in windows:
            valid = np.ones((w.height, w.width), bool)
            thumb = np.ones((13, w.height, w.width), np.float32)
            if w.index == 3:
                store.save(w.index, {"row": w.row, "col": w.col, "height": w.height,
                                     "width": w.width, "valid_pixels": 0, "skipped": True},
                           {"valid": np.packbits(np.zeros(w.height * w.width, bool)),
                            "thumb": np.full_like(thumb, np.nan)})  # fmt: skip
                continue
            prob = np.zeros((w.height, w.width), np.float32)
            if w.index == 0:
                prob[:, :16] = 1.0
            answer = type("A", (), {"text": "<p>water</p> [SEG]", "phrase": "water",
                                    "boxes": [], "prob": prob})()  # fmt: skip
            store.save_window(w, thumb, valid, answer)
        config = SceneConfig(window=32, overlap=0, crs="native")
        timings: dict[str, float] = {}
        settings = config.settings("segment the water", "skyeye-tiny")
        done = SceneWriter(tmp_path / "out", scene, config, 1).write(
            store, windows, settings, "run1", timings, 0.0
        )
    assert set(done.paths) == set(OUTPUT_NAMES) and all(p.is_file() for p in done.paths.values())
    answer = json.loads(done.paths["answer"].read_text())
    assert answer == done.answer and answer["run_id"] == "run1"
    with rasterio.open(done.paths["mask"]) as src:
        mask = src.read(1)
    assert int((mask == INSIDE).sum()) == answer["mask"]["pixels"] == 32 * 16
    assert answer["found"] == "water" and answer["mask"]["position"] == "west"
    assert answer["settings"]["crs"] == "native" and answer["settings"]["batch"] == 8
    assert {"stitch", "outputs", "total"} <= set(timings)
    assert [w.get("skipped", False) for w in answer["windows"]] == [False, False, False, True]


def test_config_settings_name_what_changes_answers():
    settings = SceneConfig(bbox=(1, 2, 3, 4)).settings("p", "skyeye-tiny")
    assert settings["bbox"] == [1.0, 2.0, 3.0, 4.0] and settings["prompt"] == "p"
    assert "batch" not in settings and "progress" not in settings  # speed, not answers


def test_a_band_count_the_sensor_lacks_names_the_file(tmp_path):
    """`--sensor naip` on a 3-band file without band names: one line naming that file."""
    from skyeye.errors import RasterReadError

    path = tmp_path / "three.tif"
    profile = {"driver": "GTiff", "width": 16, "height": 16, "count": 3, "dtype": "uint8"}
    profile |= {"crs": "EPSG:32633", "transform": rasterio.Affine(10, 0, 5e5, 0, -10, 5e6)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((3, 16, 16), 90, np.uint8))
    with pytest.raises(RasterReadError, match=rf"^{path}: 3 bands without band names, but naip"):
        SceneSource(path, sensor="naip")
