"""The demo's before/after pair compared: a real NAIP 2009/2020 pair uploaded into the two slots,
dated from the files, aligned, and "What changed?" answered by the change decoder (scripted: NDWI
moved), its mask drawn on the after image and in the swipe view, its areas in the chat; a second
"after" in the same conversation is compared with the same "before"."""

from __future__ import annotations

from pathlib import Path

import rasterio
from skyeye_testing import change_chat

from demo.handlers import ERROR_MARK, DemoHandlers
from demo.pair import CHANGE_QUESTION
from demo.session import DemoConfig, DemoSession


def _change_handlers(tiny_llm_dir: Path, tmp_path: Path) -> tuple[DemoHandlers, DemoSession]:
    """Handlers and a session over the tiny model with scripted water / NDWI-change decoders."""
    chat = change_chat(tiny_llm_dir)
    config = DemoConfig(read_size=64, max_new_tokens=20, work_root=tmp_path / "work")
    handlers = DemoHandlers(chat.model, chat.processor, config, None)
    session = DemoSession(chat.model, chat.processor, config)
    session.chat.settings = chat.settings  # the scripted decoder knows water only
    return handlers, session


def test_what_changed_draws_the_change_mask_on_the_after_image(tiny_llm_dir, tmp_path, uploads):
    handlers, session = _change_handlers(tiny_llm_dir, tmp_path)
    state, *view, slider, cleared = handlers.upload_before(uploads("naip_2009.tif"), session)
    assert cleared is None and "dated 2009-08-18" in view[-1]  # the date read from the file
    assert not isinstance(slider, tuple)  # the swipe view waits for the after image
    state, *view, slider, _ = handlers.upload_after(uploads("naip_2020.tif"), state)
    assert "dated 2020-08-31" in view[-1]
    before_preview, after_preview = slider
    assert before_preview.shape == after_preview.shape

    history, question, overlay, files, note, summary, state = list(
        handlers.compare([], state, False, "", "")
    )[-1]
    assert history[0]["content"] == CHANGE_QUESTION
    answer = history[-1]["content"]
    assert not answer.startswith(ERROR_MARK), answer
    assert "water gained" in answer and " ha" in answer and "[SEG]" not in answer, answer
    result = state.result
    assert result.reply.mask_pairs == [(0, 1)] and result.image_index == 1  # on the after image
    # The two images went to the model on one grid, each with its date.
    before, after = state.chat.images
    assert before.data.shape == after.data.shape and after.transform == before.transform
    assert (before.datetime, after.datetime) == ("2009-08-18", "2020-08-31")
    assert "naip_2020.tif" in note and overlay is not None
    assert {Path(f).name for f in files} == {"masks.geojson", "mask_1.tif"}
    with rasterio.open(next(f for f in files if f.endswith(".tif"))) as mask:
        assert mask.crs.to_epsg() == 26914 and mask.read(1).any()
    # The swipe view shows the after image with the change mask drawn on it.
    slid_before, slid_after = handlers.pair_view(state)
    assert slid_after is result.overlay and slid_before.shape == before_preview.shape

    # A new "after" for the same conversation: compared with the same "before", attached again.
    state, *_ = handlers.upload_after(uploads("naip_2020.tif"), state)
    names = [e.name for e in state.entries]
    assert names == ["naip_2009.tif", "naip_2020.tif", "naip_2020.tif", "naip_2009.tif"]
    history, *_, state = list(handlers.compare(history, state, False, "2009-08-18", ""))[-1]
    assert "water gained" in history[-1]["content"]
    assert state.result.reply.mask_pairs == [(2, 3)]  # the new pair: before first, then after
    assert [e.name for e in state.entries[2:]] == ["naip_2009.tif", "naip_2020.tif"]
