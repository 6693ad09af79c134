"""DemoSession and the Gradio handlers on the tiny random model: uploads, band edits, streamed
answers, overlays, GeoJSON/GeoTIFF results, per-session isolation and readable errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import rasterio

from demo.handlers import DemoHandlers
from demo.session import DemoError, DemoSession
from skyeye.chat.session import ChatReply
from skyeye.grounding.parse import parse_boxes


def test_upload_fills_the_table_and_preview(session, examples_dir: Path) -> None:
    index = session.add_file(examples_dir / "sentinel2_berlin_l1c.tif")
    assert index == 0
    assert session.rows(0)[3] == [4, "B04", 0.665]
    assert session.preview(0).shape == (64, 64, 3)  # read at the session's read_size
    assert "13 bands, sensor sentinel-2" in session.summary(0)
    assert "EPSG:32633" in session.summary(0)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"hello", r"\.txt files are not supported"),
        ("broken.tif", b"not a tiff" * 20, "broken.tif: not a readable raster"),
        ("empty.png", b"", "empty.png: the file is empty"),
    ],
)
def test_bad_files_get_messages_that_name_them(session, tmp_path, name, content, message) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DemoError, match=message) as err:
        session.add_file(path)
    assert str(tmp_path) not in str(err.value)  # the user's file name, not the server's temp path
    assert session.entries == []


def test_size_and_count_limits(session, examples_dir: Path, tmp_path) -> None:
    big = tmp_path / "big.tif"
    big.write_bytes(b"\0" * (6 * 2**20))
    with pytest.raises(DemoError, match="big.tif is 6 MB, over this demo's 5 MB limit"):
        session.add_file(big)
    for _ in range(3):
        session.add_file(examples_dir / "sentinel1_vv_vh.tif")
    with pytest.raises(DemoError, match="already has 3 images"):
        session.add_file(examples_dir / "sentinel1_vv_vh.tif")


def test_stream_grows_then_locks_the_bands(session, examples_dir: Path) -> None:
    session.add_file(examples_dir / "naip_rgbn.tif")
    session.set_sensor(0, "naip")
    steps = list(session.stream("is there water in this image ?"))
    assert steps and all(b.startswith(a) for a, b in zip(steps, steps[1:], strict=False))
    assert session.chat.history[-1] == {"role": "assistant", "content": steps[-1].strip()}
    assert session.entries[0].sent and len(session.chat.images) == 1
    assert session.result is not None and session.result.image_index == 0
    assert session.result.overlay is not None and session.result.overlay.shape == (512, 512, 3)
    with pytest.raises(DemoError, match="already sent to the model"):
        session.set_bands(0, session.rows(0), "naip")
    # The next question does not attach the image again.
    list(session.stream("describe this image ."))
    assert len(session.chat.images) == 1
    assert sum(m["content"].count("<image>") for m in session.chat.history) == 1


def test_closed_tab_mid_answer_does_not_break_the_next_question(session, examples_dir) -> None:
    session.config.max_new_tokens = session.chat.settings.max_new_tokens = 40
    session.add_file(examples_dir / "naip_rgbn.tif")
    session.set_sensor(0, "naip")
    stream = session.stream("is there water in this image ?")
    next(stream)
    stream.close()  # what Gradio does when the browser tab goes away mid-answer
    assert session.chat.history == [] and not session.entries[0].sent
    steps = list(session.stream("describe this image ."))
    assert steps and session.entries[0].sent
    assert sum(m["content"].count("<image>") for m in session.chat.history) == 1


def test_band_edits_before_asking_reach_the_model(session, examples_dir: Path) -> None:
    session.add_file(examples_dir / "naip_rgbn.tif")
    rows = session.rows(0)
    rows[3][2] = 0.85
    session.set_bands(0, rows, "naip")
    list(session.stream("describe this image ."))
    assert session.chat.images[0].wavelengths == [0.64, 0.56, 0.48, 0.85]


def test_sessions_share_the_model_but_not_the_state(tiny_model, demo_config, examples_dir) -> None:
    model, processor = tiny_model
    a, b = DemoSession(model, processor, demo_config), DemoSession(model, processor, demo_config)
    try:
        a.add_file(examples_dir / "sentinel1_vv_vh.tif")
        a.set_bands(0, [[1, "VV", 5.405], [2, "VH", 5.405]], "sentinel-1")
        list(a.stream("describe this image ."))
        assert a.chat.model is b.chat.model
        assert b.entries == [] and b.chat.history == [] and b.chat.images == []
        assert a.workdir != b.workdir
    finally:
        a.close()
        b.close()


def test_georeferenced_results_are_written(session, examples_dir: Path) -> None:
    session.add_file(examples_dir / "sentinel2_berlin_l1c.tif")
    session.entries[0].sent = True
    image = session.entries[0].image
    mask = np.zeros(image.data.shape[1:], dtype=bool)
    mask[8:16, 32:48] = True
    text = "<p>the lake</p>{<50><0><100><50>} <p>the lake</p> [SEG]"
    reply = ChatReply(text=text, boxes=parse_boxes(text), masks=[mask], mask_phrases=["the lake"])
    result = session._finish(reply)
    names = sorted(p.name for p in result.files)
    assert names == ["boxes.geojson", "mask_1.tif", "masks.geojson"]
    boxes = json.loads((result.files[0].parent / "boxes.geojson").read_text())
    ring = boxes["features"][0]["geometry"]["coordinates"][0]
    t = image.transform
    # The box's top-left corner (x = 0.5 W, y = 0) in map coordinates of the read grid.
    assert ring[0] == pytest.approx([t.c + t.a * 0.5 * image.data.shape[2], t.f])
    assert boxes["features"][0]["properties"]["phrase"] == "the lake"
    with rasterio.open(result.files[0].parent / "mask_1.tif") as src:
        assert src.crs == image.crs and src.transform == t
        assert (src.read(1).astype(bool) == mask).all()
    assert "download" in result.note
    assert result.overlay is not None


def test_plain_photos_get_an_overlay_but_no_geojson(session, examples_dir, tmp_path) -> None:
    from PIL import Image

    png = tmp_path / "photo.png"
    Image.fromarray(np.full((32, 48, 3), 120, dtype=np.uint8)).save(png)
    session.add_file(png)
    session.entries[0].sent = True
    result = session._finish(
        ChatReply(text="{<0><0><50><50>}", boxes=parse_boxes("{<0><0><50><50>}"))
    )
    assert result.files == [] and "not georeferenced" in result.note
    assert result.overlay is not None


def test_handlers_report_errors_and_keep_good_files(
    tiny_model, demo_config, examples_dir, tmp_path
):
    model, processor = tiny_model
    handlers = DemoHandlers(model, processor, demo_config, examples_dir)
    bad = tmp_path / "bad.jp2"
    bad.write_bytes(b"junk" * 10)
    with pytest.raises(gr.Error, match="bad.jp2: not a readable raster"):
        handlers.upload([str(bad)], None)
    good = tmp_path / "sentinel1_vv_vh.tif"
    shutil.copy(examples_dir / "sentinel1_vv_vh.tif", good)
    with pytest.warns(UserWarning, match="bad.jp2"):  # gr.Warning outside a browser request
        out = handlers.upload([str(bad), str(good)], None)
    state, choice, rows, sensor, modes, preview, summary, cleared = out
    assert cleared is None  # the upload field is emptied once its files are read
    assert isinstance(state, DemoSession) and len(state.entries) == 1
    assert rows == [[1, "VV", ""], [2, "VH", ""]]
    assert modes["value"].startswith("SAR") and preview.shape == (64, 64, 3)
    # An example from the gallery lands in the same session.
    state, *_ = handlers.add_example_by_name("sentinel-2", state)
    assert [e.name for e in state.entries] == ["sentinel1_vv_vh.tif", "sentinel2_berlin_l1c.tif"]
    with pytest.raises(gr.Error, match="sentinel-2 has 13 bands"):
        handlers.set_sensor(0, "sentinel-2", state)
    state.close()


def test_chat_handler_streams_history_and_reset_clears(tiny_model, demo_config, examples_dir):
    model, processor = tiny_model
    handlers = DemoHandlers(model, processor, demo_config, examples_dir)
    state, *_ = handlers.add_example_by_name("naip", None)
    (history, *_), *more = list(handlers.chat("  ", [], state))
    assert not more and "Type a question first" in history[-1]["content"]
    updates = list(handlers.chat("is there water ?", [], state))
    history, box, overlay, files, note, summary, state = updates[-1]
    assert len(updates) >= 2
    assert history[0] == {"role": "user", "content": "is there water ?"}
    assert history[1]["role"] == "assistant" and history[1]["content"]
    assert overlay.shape == (512, 512, 3) and box == "" and "naip_rgbn.tif" in note
    assert "sent to the model" in summary
    workdir = state.workdir
    out = handlers.reset(state)
    assert out[0].entries == [] and out[0].chat.history == [] and out[1] == []
    assert out[0].workdir != workdir and not workdir.exists()
