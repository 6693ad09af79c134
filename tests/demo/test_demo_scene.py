"""The demo on a large GeoTIFF: a mask answer is followed by the whole scene at its own
resolution with its progress streamed, the downloads are the scene's full-resolution files; the
switch turns it off; a closed tab stops the scene."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from skyeye_testing import BIG_SHAPE, segmenting_chat, write_big_scene

from demo.handlers import DemoHandlers
from demo.session import DemoConfig, DemoSession
from skyeye.scenechat.follow import SceneOptions

QUESTION = "segment the lake"


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    return write_big_scene(tmp_path_factory.mktemp("scene") / "big.tif")


@pytest.fixture
def seg_model(tiny_llm_dir):
    chat = segmenting_chat(tiny_llm_dir)  # every answer ends with [SEG]: each has a mask
    return chat.model, chat.processor


@pytest.fixture
def config(tmp_path) -> DemoConfig:
    return DemoConfig(
        read_size=64,
        max_new_tokens=6,
        work_root=tmp_path / "work",
        scene_options=SceneOptions(batch=1),
    )


@pytest.fixture
def session(seg_model, config):
    s = DemoSession(*seg_model, config)
    yield s
    s.close()


def test_a_mask_answer_on_a_large_geotiff_streams_the_scene_and_offers_its_files(session, big):
    session.add_file(big)
    texts = list(session.stream(QUESTION))
    progress = [t.rsplit("\n", 1)[-1] for t in texts if "⏳" in t]
    assert progress[0].endswith("reading the scene")
    assert [p.rsplit(": ", 1)[1] for p in progress[1:]] == [
        f"{k} / 4 windows" for k in (1, 2, 3, 4)
    ]
    assert (
        texts[-1]
        .rsplit("\n", 1)[-1]
        .startswith("Whole scene at its own resolution (640 x 600 px, 4 windows of 512 px): ")
    )
    result = session.result
    assert [p.name for p in result.files] == ["mask.tif", "mask.geojson", "answer.json"]
    with rasterio.open(result.files[0]) as m, rasterio.open(big) as s:
        assert (m.height, m.width) == BIG_SHAPE and (m.crs, m.transform) == (s.crs, s.transform)
    # The chat saw the image at 64 px; the downloads are at the scene's 640 x 600.
    assert session.entries[0].image.data.shape[1:] == (60, 64)
    assert result.scene is not None and result.overlay.shape[2] == 3
    assert result.overlay.shape[:2] != (60, 64) and "Cloud-Optimized GeoTIFF" in result.note


def test_the_switch_off_keeps_the_answer_on_the_image_as_read(seg_model, config, big):
    handlers = DemoHandlers(*seg_model, config, None)
    session = DemoSession(*seg_model, config)
    session.add_file(big)
    *_, (history, _, overlay, files, note, _, state) = handlers.chat(QUESTION, [], session, False)
    assert "⏳" not in history[-1]["content"] and "Whole scene" not in history[-1]["content"]
    assert sorted(Path(f).name for f in files) == ["mask_1.tif", "masks.geojson"]
    with rasterio.open(next(f for f in files if f.endswith(".tif"))) as m:
        assert (m.height, m.width) == (60, 64)
    state.close()


def test_an_upload_larger_than_the_window_is_kept_in_the_session_folder(
    session, big, tmp_path, monkeypatch, examples_dir
):
    cache = tmp_path / "gradio"
    monkeypatch.setattr("demo.workspace.get_upload_folder", lambda: str(cache))
    upload = cache / "abc123" / "big.tif"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(big.read_bytes())
    session.add_file(upload)
    kept = session.entries[0].source
    assert kept is not None and kept.is_relative_to(session.workdir) and kept.is_file()
    assert not upload.exists() and not upload.parent.exists()
    session.add_file(examples_dir / "sentinel2_berlin_l1c.tif")  # 512 px: not a scene
    assert session.entries[1].source is None
    session.close()
    assert not kept.exists()


def test_a_closed_tab_stops_the_scene_and_the_next_question_works(session, big):
    session.add_file(big)
    stream = session.stream(QUESTION)
    for text in stream:
        if text.endswith("1 / 4 windows"):
            break
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "skyeye-demo-scene"]
    texts = list(session.stream(QUESTION))
    assert "Whole scene at its own resolution" in texts[-1]
    assert np.isfinite(session.result.scene.answer["mask"]["share_of_valid"])
