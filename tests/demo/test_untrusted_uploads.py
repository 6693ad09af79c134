"""The demo reads uploads as images and nothing else: a VRT is refused without fetching its URL
or drawing the raster it points at, an oversized header is refused before decoding, and a
question asked before any image is answered with what to do, not an invented answer."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hostile_inputs import big_png, listener, vrt_over, write_geotiff

from demo.handlers import ERROR_MARK, DemoHandlers
from skyeye.errors import DemoError


def test_vrt_uploads_are_refused_and_fetch_nothing(session, tmp_path):
    outside = write_geotiff(tmp_path / "private.tif", np.full((1, 8, 8), 9, np.uint8))
    with listener() as (url, seen):
        for i, source in enumerate([f"/vsicurl/{url}/x.tif", str(outside)]):
            upload = tmp_path / f"upload{i}.tif"
            upload.write_text(vrt_over(source))
            with pytest.raises(DemoError, match="VRT") as err:
                session.add_file(upload)
            assert str(outside) not in str(err.value)
        time.sleep(0.2)
        assert seen == []
    assert session.entries == []


def test_an_oversized_upload_is_refused_before_decoding(session, tmp_path):
    png = big_png(tmp_path / "big.png")
    started = time.perf_counter()
    with pytest.raises(DemoError, match="--max-pixels"):
        session.add_file(png)
    assert time.perf_counter() - started < 1.0


def test_a_question_before_any_image_gets_no_invented_answer(tiny_model, demo_config):
    model, processor = tiny_model
    handlers = DemoHandlers(model, processor, demo_config, None)
    history, question, *_ = list(handlers.chat("is there water ?", [], None))[-1]
    assert history[-1]["content"].startswith(ERROR_MARK)
    assert "No image yet" in history[-1]["content"]
    assert question == {"__type__": "update"}  # the question stays in its box
