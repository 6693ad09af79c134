"""Change questions answered by measurement (`skyeye.chat.change_answer`): the forced change
phrase, the change mask from the change decoder, its area on the compared pixels, the transitions,
the readable sentence; a model without a change decoder says so; one date without a clear pixel
is a one-line error."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from skyeye_testing import change_chat, disc_mask, two_dates

from skyeye.chat.change_answer import (
    GENERAL_PHRASE,
    NO_CHANGE_DECODER,
    NO_GROUND_AREA,
    ask_change,
    change_summary,
    read_change_question,
)
from skyeye.chat.measured import asked_unit, format_area
from skyeye.chat.multi_date import prepare_dated_images, uncut_mask
from skyeye.chat.readable import render_readable
from skyeye.errors import NoComparableAreaError


def test_change_questions_are_read_by_one_rule():
    general = ("What changed between these dates?", "Did anything change?",
               "Compare the two images: what is different?", "Describe the changes.")  # fmt: skip
    for q in general:
        assert read_change_question(q).phrase == GENERAL_PHRASE, q
    assert read_change_question("Where did water appear?").phrase == "new water"
    assert read_change_question("Show where the lake disappeared.").phrase == "lost water"
    lost = read_change_question("How much forest was lost, in hectares?")
    assert (lost.phrase, lost.cls, lost.direction) == ("lost vegetation", "vegetation", "lost")
    assert read_change_question("Where were new buildings built?").phrase == "new buildings"
    assert read_change_question("How much built-up area was lost?").phrase == "lost buildings"
    # Both directions, or two classes: the general phrase (the transitions say which is which).
    assert read_change_question("Was water gained or lost?").phrase == GENERAL_PHRASE
    for plain in ("Is there water?", "Show the water in the second image.", "Describe the image."):
        assert read_change_question(plain) is None, plain


def _area_m2(mask: np.ndarray) -> float:
    return float(mask.sum()) * 100.0  # 10 m pixels


def test_what_changed_is_the_change_decoders_mask_measured(tiny_llm_dir):
    session = change_chat(tiny_llm_dir)
    before, after, area = two_dates()
    for image in prepare_dated_images([before, after]).images:
        session.add_image(image)
    reply = ask_change(session)
    # The opening was forced (the scripted LLM would have written "<p>water</p> [SEG]").
    assert reply.text.startswith(f"<p>{GENERAL_PHRASE}</p> [SEG] Yes — ")
    assert reply.mask_pairs == [(0, 1)] and reply.change.pair == (0, 1)
    disc = disc_mask(12)[0]
    seen = disc.copy()
    seen[:4] = False  # the after date has no data in its top rows
    # The after date's empty rows are cut off (only the overlap is shown to the model); the
    # mask is put back on the first image's grid to compare.
    assert session.images[0].data.shape[1:] == (60, 64)
    mask = uncut_mask(reply.masks[reply.change.mask], session.images[0])
    assert not mask[:4].any()  # no change is claimed where a date has no data
    iou = (mask & seen).sum() / (mask | seen).sum()
    assert iou > 0.9
    assert reply.change.area.m2 == pytest.approx(_area_m2(mask))
    assert reply.change.area.share == pytest.approx(mask.sum() / (60 * 64))
    assert reply.change.compared_share == pytest.approx(1.0)  # of the cut grid
    assert reply.change.overlap == pytest.approx(60 / 64)
    water = reply.change.transitions.classes[0]
    assert water.name == "water" and water.lost.pixels == 0
    assert abs(water.gained.m2 - area * seen.sum() / disc.sum()) / area < 0.05
    readable = render_readable(reply.text)
    ha = format_area(reply.change.area.m2)
    share = f"{100 * reply.change.area.share:.1f} % of the compared area"
    assert readable.startswith(f"Yes — {ha} changed ({share}), mask 1: water gained ")
    assert "The images overlap on 94% of the first image: only the overlap is compared" in readable
    assert "clouds could not be masked" in readable
    summary = change_summary(reply)
    assert summary["images"] == [0, 1] and summary["dates"] == ["2018-05-01", "2020-05-01"]
    assert summary["transitions"][0]["class"] == "water"
    assert summary["excluded_fraction"] == pytest.approx(0.0)
    # The conversation keeps the grammar; a plain follow-up is the model's own answer.
    assert session.messages[-1]["content"] == reply.text
    plain = session.ask("Show the water in the second image.")
    assert plain.change is None and plain.mask_pairs == [None]
    # a mask about one of several images says which one it lies on
    assert plain.text.endswith("On image 2 of 2 (2020-05-01).")
    assert render_readable(plain.text).startswith("On image 2 of 2 (2020-05-01) — water covers ")


def test_a_class_question_forces_the_class_change_phrase(tiny_llm_dir):
    session = change_chat(tiny_llm_dir)
    before, after, _ = two_dates()
    session.add_image(before)
    session.add_image(after)
    reply = session.ask("How much water was gained, in hectares?")
    assert reply.text.startswith("<p>new water</p> [SEG] Yes — ")
    assert " of new water (" in reply.text and reply.change.question.cls == "water"
    # Asked in hectares, said in hectares (the default unit would be m² below 1 ha), the
    # transitions too.
    hectares = format_area(reply.change.area.m2, "ha")
    assert hectares.endswith(" ha") and f"Yes — {hectares} of new water (" in reply.text
    assert "water gained " in reply.text and " m²" not in reply.text


def test_an_area_asked_of_images_without_a_georeference_says_why_there_is_none(tiny_llm_dir):
    session = change_chat(tiny_llm_dir)
    for image in two_dates()[:2]:
        session.add_image(dataclasses.replace(image, crs=None, transform=None))
    reply = session.ask("How much water was gained, in hectares?")
    assert reply.change.area.m2 is None and " % of the compared area" in reply.text
    assert reply.text.endswith(NO_GROUND_AREA)
    plain = session.ask("What changed between these dates?")  # no unit asked: no such sentence
    assert NO_GROUND_AREA not in plain.text


def test_the_unit_a_question_asks_for_is_read():
    assert asked_unit("How much forest was lost, in hectares?") == "ha"
    assert asked_unit("How many ha of water?") == "ha"
    assert asked_unit("How much changed, in square kilometres?") == "km²"
    assert asked_unit("What changed, in km2?") == "km²"
    assert asked_unit("What changed between these dates?") is None
    assert asked_unit("In ha or km²?") is None  # two units: the usual one
    assert format_area(2.5e8, "ha") == "25,000 ha" and format_area(2.5e8) == "250 km²"


def test_no_change_is_no_and_partial_overlap_is_said(tiny_llm_dir):
    session = change_chat(tiny_llm_dir)
    before, _, _ = two_dates(nodata_rows=0)
    later = dataclasses.replace(before, data=before.data.copy(), datetime="2021-01-01")
    # The later image covers only the left half of the first one: shifted by 32 columns.
    transform = before.transform @ before.transform.translation(-32, 0)
    later = dataclasses.replace(later, transform=transform)
    prepared = prepare_dated_images([before, later])
    assert prepared.note is not None
    for image in prepared.images:
        session.add_image(image)
    reply = session.ask("Did anything change?")
    assert reply.text.startswith(f"<p>{GENERAL_PHRASE}</p> [SEG] No — ")
    assert "under the 0.5 % that counts as a change" in reply.text
    assert "no water, vegetation, built-up or bare land gained or lost 0.5 % or more" in reply.text
    assert "The images overlap on 50% of the first image" in render_readable(reply.text)
    assert reply.change.overlap == pytest.approx(0.5, abs=0.02)


def test_a_model_without_a_change_decoder_says_so(tiny_llm_dir):
    session = change_chat(tiny_llm_dir, change=False)
    before, after, _ = two_dates()
    session.add_image(before)
    session.add_image(after)
    reply = session.ask("What changed between these dates?")
    assert reply.text == NO_CHANGE_DECODER and not reply.masks and reply.change is None
    assert not any(ch.isdigit() for ch in reply.text)


def test_one_image_asks_for_the_other_date_and_a_plain_question_is_no_change_answer(
    tiny_llm_dir,
):
    from skyeye.chat.change_answer import ONE_IMAGE

    session = change_chat(tiny_llm_dir)
    before, _, _ = two_dates()
    session.add_image(before)
    # The LLM, asked anyway, described the one image ("Vegetation covers 713 ha").
    reply = session.ask("What changed between these dates?")
    assert reply.text == ONE_IMAGE and reply.masks == [] and reply.change is None
    # A class's change phrase of one image is a mask question (flood mapping on one SAR scene).
    flood = session.ask("Segment the flooded area.")
    assert flood.text != ONE_IMAGE and flood.mask_pairs == [None]
    plain = session.ask("Is there water?")  # not a change question: the model's own answer
    assert plain.mask_pairs == [None] and "water" in plain.text
    with pytest.raises(ValueError, match="does not ask about change"):
        ask_change(session, "Is there water?")


def test_no_comparable_pixel_is_one_line_and_leaves_no_half_turn(tiny_llm_dir):
    session = change_chat(tiny_llm_dir)
    before, after, _ = two_dates(nodata_rows=0)
    session.add_image(before)
    # Only the top rows of the after date have data where the before date has none.
    after.data[:, 4:, :] = np.nan
    before.data[:, :4, :] = np.nan
    session.add_image(after)
    with pytest.raises(NoComparableAreaError, match="share no pixel with data"):
        session.ask("What changed?")
    assert session.messages == [] and len(session.pending_images) == 2


def test_dates_with_no_band_in_common_are_one_line_before_any_model_work(tiny_llm_dir):
    from skyeye.errors import MissingBandError

    session = change_chat(tiny_llm_dir)
    before, after, _ = two_dates(nodata_rows=0)
    radar = dataclasses.replace(
        after, data=after.data[:2].copy(), band_names=["VV", "VH"], wavelengths=[3.75, 3.75]
    )  # a placeholder radar wavelength (µm), as checkpoints give SAR bands one
    for image in prepare_dated_images([before, radar]).images:
        session.add_image(image)
    with pytest.raises(MissingBandError, match="image 1 .* and image 2 \\(VV, VH\\) share no band"):
        session.ask("What changed between these dates?")
    assert session.messages == [] and len(session.pending_images) == 2


def test_undated_images_are_compared_in_the_order_given_and_the_answer_says_so(tiny_llm_dir):
    before, after, _ = two_dates()
    dated = change_chat(tiny_llm_dir)
    for image in prepare_dated_images([before, after]).images:
        dated.add_image(image)
    assert "dates are not known" not in ask_change(dated).text
    session = change_chat(tiny_llm_dir)
    undated = [dataclasses.replace(im, datetime=None) for im in (before, after)]
    for image in prepare_dated_images(undated).images:
        session.add_image(image)
    reply = ask_change(session)
    assert reply.change.dates == (None, None)
    assert "dates are not known, so the first image is taken as the earlier" in render_readable(
        reply.text
    )


def test_three_dates_say_which_two_were_compared(tiny_llm_dir):
    before, after, _ = two_dates()
    middle = dataclasses.replace(before, data=before.data.copy(), datetime="2019-05-01")
    session = change_chat(tiny_llm_dir)
    for image in prepare_dated_images([before, middle, after]).images:
        session.add_image(image)
    reply = ask_change(session)
    assert reply.change.pair == (0, 2) and reply.change.dates == ("2018-05-01", "2020-05-01")
    assert (
        "compared: the first of the 3 images (2018-05-01) with the last (2020-05-01); to compare "
        "others, ask about those two alone." in reply.text.lower()
    )
    two = change_chat(tiny_llm_dir)
    for image in prepare_dated_images([before, after]).images:
        two.add_image(image)
    assert "compared:" not in ask_change(two).text.lower()  # two images: nothing to choose


def test_images_added_with_slash_image_are_compared_as_image_options_are(
    tiny_llm_dir, tmp_path, monkeypatch, capsys
):
    """`/image A` then `/image B` (B on another grid) before a question: dated, put on A's grid
    and compared, as `--image A --image B`; dates that run backwards: one line, B not added."""
    from skyeye_testing import CHANGE_WAVES, write_tiff

    from skyeye.chat.terminal import _interactive

    before, after, _ = two_dates()
    shifted = after.transform @ after.transform.translation(2, 1)  # another grid, overlapping
    a = write_tiff(before, tmp_path / "a.tif")
    b = write_tiff(dataclasses.replace(after, transform=shifted), tmp_path / "b.tif")
    waves = ",".join(map(str, CHANGE_WAVES))
    session = change_chat(tiny_llm_dir)
    lines = iter([f"/image {a} {waves} 2018-05-01", f"/image {b} {waves} 2020-05-01",
                  "What changed between these dates?", "/quit"])  # fmt: skip
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert _interactive(session, "") == 0
    out = capsys.readouterr().out
    assert "skyeye> Yes — " in out and "changed (" in out and "water gained" in out
    assert [im.datetime for im in session.images] == ["2018-05-01", "2020-05-01"]
    assert session.images[0].transform == session.images[1].transform  # on A's grid

    session = change_chat(tiny_llm_dir, answer="<p>water</p> [SEG]")
    lines = iter([f"/image {a} {waves} 2020-05-01", f"/image {b} {waves} 2018-05-01", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert _interactive(session, "") == 0
    err = [e for e in capsys.readouterr().err.splitlines() if e.startswith("error:")]
    assert len(err) == 1 and "dates run backwards" in err[0] and "give the earlier" in err[0]
    assert len(session.images) == 1 and len(session.pending_images) == 1


def test_slash_image_uses_the_sensor_given_on_the_command_line(tiny_llm_dir, tmp_path):
    """`--sensor X` once for all images applies to images added with `/image` too."""
    from skyeye_testing import write_tiff

    from skyeye.chat.terminal import _added_image

    before, _, _ = two_dates()
    path = write_tiff(dataclasses.replace(before, band_names=[""] * 4), tmp_path / "a.tif")
    session = change_chat(tiny_llm_dir)
    with pytest.raises(ValueError, match="wavelengths"):
        _added_image(session, ["/image", str(path)], {})
    image, date = _added_image(session, ["/image", str(path)], {"sensor": "naip"})
    assert date is None and len(image.wavelengths) == 4


def test_dates_with_different_bands_are_said(tiny_llm_dir):
    """A band one date lacks can read as change: the answer says which bands differ."""
    session = change_chat(tiny_llm_dir)
    before, after, _ = two_dates()
    swir = np.full((1, *after.data.shape[1:]), 80.0, np.float32)
    after = dataclasses.replace(
        after,
        data=np.concatenate([after.data, swir]),
        band_names=[*after.band_names, "SWIR"],
        wavelengths=[*after.wavelengths, 1.61],
    )
    for image in prepare_dated_images([before, after]).images:
        session.add_image(image)
    reply = ask_change(session)
    assert reply.change is not None
    assert "the dates' bands differ (SWIR 1.61 µm in image 2 only)" in reply.text
    same = change_chat(tiny_llm_dir)
    for image in prepare_dated_images(list(two_dates()[:2])).images:
        same.add_image(image)
    assert "bands differ" not in ask_change(same).text
