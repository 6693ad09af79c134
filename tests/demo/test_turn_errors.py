"""A failed turn of the demo: one readable message in the chat and the log, the other panels
untouched (issue 15, item 13; the browser test checks the same in Chromium)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from demo.handlers import ERROR_MARK, DemoHandlers

UNCHANGED = {"__type__": "update"}  # gr.update() with nothing in it


def _two_band_geotiff(path: Path) -> Path:
    profile = dict(driver="GTiff", width=32, height=32, count=2, dtype="float32",
                   crs="EPSG:32633", transform=from_origin(500000, 5800000, 10, 10))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).random((2, 32, 32), dtype=np.float32))
    return path


def test_image_without_wavelengths_fails_in_the_chat_with_the_fix(
    tiny_model, demo_config, tmp_path, caplog
):
    model, processor = tiny_model
    handlers = DemoHandlers(model, processor, demo_config, None)
    state, *_ = handlers.upload([str(_two_band_geotiff(tmp_path / "scene.tif"))], None)
    with caplog.at_level(logging.WARNING, logger="demo.handlers"):
        updates = list(handlers.chat("is there water ?", [], state))
    history, question, overlay, files, note, summary, state = updates[-1]
    message = history[-1]["content"]
    assert history[-1]["role"] == "assistant" and message.startswith(ERROR_MARK)
    assert "scene.tif" in message and "Pick a sensor" in message and "wavelength" in message
    assert "--wavelengths" not in message  # the demo's fix, not the command line's
    assert [question, overlay, files, note, summary] == [UNCHANGED] * 5
    assert any("scene.tif" in r.getMessage() for r in caplog.records)
    # Once fixed with a wavelength table (no sensor), the same question is answered.
    handlers.apply_table(0, [[1, "a", 0.665], [2, "b", 0.56]], None, state)
    history, *_ = list(handlers.chat("is there water ?", history, state))[-1]
    assert not history[-1]["content"].startswith(ERROR_MARK)


def test_a_failing_answer_is_reported_in_the_chat(tiny_model, demo_config, examples_dir, caplog):
    model, processor = tiny_model
    handlers = DemoHandlers(model, processor, demo_config, examples_dir)
    state, *_ = handlers.add_example_by_name("naip", None)
    processor.max_length = 10  # a real failure of the turn: the prompt does not fit
    with caplog.at_level(logging.WARNING, logger="demo.handlers"):
        history, question, *panels, state = list(handlers.chat("is there water ?", [], state))[-1]
    assert history[0] == {"role": "user", "content": "is there water ?"}
    assert (
        history[-1]["content"].startswith(ERROR_MARK)
        and "context holds 10" in history[-1]["content"]
    )
    assert question == UNCHANGED and panels == [UNCHANGED] * 4
    assert caplog.records
    state.close()


def test_gee_sentinel2_upload_is_recognised(tiny_model, demo_config, tmp_path):
    model, processor = tiny_model
    names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    path = tmp_path / "s2_gee.tif"
    profile = dict(driver="GTiff", width=32, height=32, count=13, dtype="uint16",
                   crs="EPSG:32633", transform=from_origin(500000, 5800000, 10, 10))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((13, 32, 32), 1200, dtype="uint16"))
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
    handlers = DemoHandlers(model, processor, demo_config, None)
    state, choice, rows, sensor, *_ = handlers.upload([str(path)], None)
    assert sensor["value"] == "sentinel-2"
    assert rows[8] == [9, "B8A", 0.865] and all(r[2] != "" for r in rows)
    state.close()
