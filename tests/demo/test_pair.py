"""The demo's before/after pair through its handlers, bad input: dates backwards, a bad date, no
overlap, no band in common, a missing half, other images waiting: one chat message each, and
nothing changes (the slots keep their images as read, nothing reaches the model or the disk)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from demo.handlers import ERROR_MARK, DemoHandlers

PAIR = Path(__file__).resolve().parents[1] / "fixtures" / "change_pair"


def _far_away(path: Path) -> str:
    """A 4-band GeoTIFF in the pair's CRS 100 km away from it."""
    with rasterio.open(PAIR / "naip_2020.tif") as src:
        profile, data = src.profile, src.read()
        west, north = src.transform.c + 100_000, src.transform.f
    profile.update(transform=from_origin(west, north, 5, 5), photometric="minisblack")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("R", "G", "B", "NIR")
    return str(path)


def _swir_here(path: Path) -> str:
    """A 2-band Sentinel-2 SWIR image on the pair's grid: no band in common with NAIP's."""
    with rasterio.open(PAIR / "naip_2020.tif") as src:
        profile = {**src.profile, "count": 2, "dtype": "float32", "photometric": "minisblack"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).uniform(0, 1, (2, 128, 128)).astype("float32"))
        dst.descriptions = ("B11", "B12")
    return str(path)


@pytest.mark.parametrize(
    ("after", "dates", "message"),
    [
        ("naip_2020.tif", ("2021-05-01", ""), "dates run backwards"),
        ("naip_2020.tif", ("", "31/08/2020"), "the after date '31/08/2020' is not a date"),
        ("far", ("", ""), "do not overlap"),
        ("swir", ("", ""), "share no band"),
    ],
)
def test_a_bad_pair_is_one_chat_message_and_changes_nothing(
    session, tmp_path, uploads, after, dates, message
) -> None:
    handlers = DemoHandlers(session.chat.model, session.processor, session.config, None)
    state, *_ = handlers.upload_before(uploads("naip_2009.tif"), session)
    if after == "far":
        path = _far_away(tmp_path / "elsewhere.tif")
    elif after == "swir":
        path = _swir_here(tmp_path / "swir.tif")
    else:
        path = uploads(after)
    state, *_ = handlers.upload_after(path, state)
    if after == "swir":
        state.set_sensor(1, "sentinel-2")
    images = [e.image for e in state.entries]
    history, question, *panels, state = list(handlers.compare([], state, False, *dates))[-1]
    assert history[-1]["content"].startswith(ERROR_MARK), history
    assert message in history[-1]["content"], history[-1]["content"]
    assert "Traceback" not in history[-1]["content"]
    # Nothing half-written: the slots keep their images as read, nothing went to the model,
    # no result file was written, the panels were left as they were.
    assert all(a is b for a, b in zip(images, [e.image for e in state.entries], strict=True))
    assert state.chat.images == [] and state.result is None
    assert not any(state.workdir.iterdir())
    assert all(not isinstance(p, np.ndarray) for p in panels[:3])


def test_compare_asks_for_the_missing_half(session, uploads) -> None:
    handlers = DemoHandlers(session.chat.model, session.processor, session.config, None)
    history, *_ = list(handlers.compare([], session, False, "", ""))[-1]
    assert "no before/after pair yet" in history[-1]["content"]
    state, *_ = handlers.upload_after(uploads("naip_2020.tif"), session)
    history, *_ = list(handlers.compare([], state, False, "", ""))[-1]
    assert "the before image is missing" in history[-1]["content"]
    # Replacing the after image before it was sent keeps one entry per slot.
    state, *_ = handlers.upload_after(uploads("naip_2020.tif"), state)
    assert len(state.entries) == 1 and state.pair.after == 0


def test_a_pair_is_compared_on_its_own(session, uploads, examples_dir) -> None:
    handlers = DemoHandlers(session.chat.model, session.processor, session.config, None)
    session.add_file(examples_dir / "naip_rgbn.tif")
    state, *_ = handlers.upload_before(uploads("naip_2009.tif"), session)
    state, *_ = handlers.upload_after(uploads("naip_2020.tif"), state)
    history, *_ = list(handlers.compare([], state, False, "", ""))[-1]
    assert "naip_rgbn.tif would go with this question too" in history[-1]["content"]


def test_an_undated_pair_is_compared_and_the_note_says_so(session, tmp_path, uploads) -> None:
    """A date missing on one side is said in the note (file name as given); a model without a
    change decoder says so in the chat, with no number."""
    undated = tmp_path / "NAIP_Undated.tif"
    with rasterio.open(PAIR / "naip_2020.tif") as src:
        profile, data = {**src.profile, "photometric": "minisblack"}, src.read()
    with rasterio.open(undated, "w", **profile) as dst:  # the pixels without the date tag
        dst.write(data)
        dst.descriptions = ("R", "G", "B", "NIR")
    handlers = DemoHandlers(session.chat.model, session.processor, session.config, None)
    state, *_ = handlers.upload_before(uploads("naip_2009.tif"), session)
    state, *_ = handlers.upload_after(str(undated), state)
    history, _, _, _, note, _, state = list(handlers.compare([], state, False, "", ""))[-1]
    assert "NAIP_Undated.tif: no date (type one in its date field)" in note, note
    assert "no change decoder" in history[-1]["content"], history
    assert [im.datetime for im in state.chat.images] == ["2009-08-18", None]
