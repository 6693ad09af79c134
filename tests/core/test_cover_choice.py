"""'Which of these covers the largest part of this image?' among classes the decoder outlines is
answered by the option whose mask covers the most, drawn with the class question; other choices
are left to the scorers."""

from __future__ import annotations

import numpy as np
import pytest
from scripted_chat import ScriptedSession, image

from skyeye.chat.counting import DEFAULT_MASK_CLASSES
from skyeye.chat.cover_choice import asks_largest_cover, cover_answer, cover_classes
from skyeye.grounding.options import parse_options


def _share(rows: int) -> np.ndarray:
    mask = np.zeros((64, 64), bool)
    mask[:rows] = True
    return mask


@pytest.mark.parametrize(
    "stem",
    [
        "Which of these covers the largest part of this Sentinel-2 image?",
        "Which class covers the most ground in this Landsat 5 image?",
        "What is the main land cover in this image?",
        "Which surface dominates the scene?",
    ],
)
def test_cover_questions_are_read(stem):
    assert asks_largest_cover(stem)


@pytest.mark.parametrize(
    "stem", ["Which scene class best describes this image?", "Is there more water than cloud?"]
)
def test_other_stems_are_not_cover_questions(stem):
    assert not asks_largest_cover(stem)


def test_every_option_must_name_its_own_decoder_class():
    ok = parse_options("Which covers the most? A. lakes B. forest C. fields")
    assert cover_classes(ok, DEFAULT_MASK_CLASSES) == ["water", "forest", "cultivated land"]
    unknown = parse_options("Which covers the most? A. water B. harbour")
    assert cover_classes(unknown, DEFAULT_MASK_CLASSES) is None
    twice = parse_options("Which covers the most? A. lake B. river")  # both are water masks
    assert cover_classes(twice, DEFAULT_MASK_CLASSES) is None


@pytest.mark.parametrize("largest, letter", [("water", "B"), ("cloud", "C"), ("vegetation", "A")])
def test_the_option_whose_mask_covers_most_is_the_answer(largest, letter):
    masks = {"vegetation": _share(10), "water": _share(20), "cloud": _share(5)}
    masks[largest] = _share(40)
    session = ScriptedSession(masks, image())
    question = (
        "Which of these covers the largest part of this Sentinel-2 image?\n"
        "A. vegetation\nB. water\nC. cloud\nAnswer with the letter."
    )
    assert cover_answer(session, question) == f"{letter}. {largest}"
    # Each mask comes from its own class question about the image alone.
    assert session.forced == ["<p>vegetation</p> [SEG]", "<p>water</p> [SEG]", "<p>cloud</p> [SEG]"]
    assert session.questions == [f"\nSegment all {c}." for c in ("vegetation", "water", "cloud")]


def test_no_mask_head_two_images_or_scene_names_leave_it_to_the_scorers():
    masks = {"water": _share(20), "cloud": _share(5)}
    question = "Which covers the most of this image?\nA. water\nB. cloud"
    assert cover_answer(ScriptedSession(masks, image(), mask_head=False), question) is None
    two = ScriptedSession(masks, image())
    two.images = [image(), image()]
    assert cover_answer(two, question) is None
    scenes = "Which covers the most of this image?\nA. harbour\nB. airport"
    session = ScriptedSession(masks, image())
    assert cover_answer(session, scenes) is None and session.forced == []
    assert cover_answer(session, "Which covers the most? A. water") is None  # one option
