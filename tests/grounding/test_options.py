"""Lettered options of multiple-choice questions, as people and benchmarks write them."""

from __future__ import annotations

import pytest

from skyeye.errors import OptionsError
from skyeye.grounding.options import format_choice, parse_options

LAYOUTS = {
    "lines-dot": "What covers most of the image?\nA. forest\nB. water\nC. urban area\nD. farmland",
    "lines-paren": "What covers most of the image?\nA) forest\nB) water\nC) urban area\nD) farmland",
    "brackets-inline": "What covers most of the image? (A) forest (B) water (C) urban area (D) farmland",
    "inline-commas": "What covers most of the image? Options: A. forest, B. water, C. urban area, D. farmland",
    "colon-lines": "What covers most of the image?\nChoices:\nA: forest\nB: water\nC: urban area\nD: farmland\nAnswer with the option's letter.",
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_five_common_layouts_parse_to_the_same_options(layout):
    choice = parse_options(LAYOUTS[layout])
    assert choice is not None
    assert [(o.letter, o.text) for o in choice.options] == [
        ("A", "forest"), ("B", "water"), ("C", "urban area"), ("D", "farmland"),
    ]  # fmt: skip
    assert choice.stem.startswith("What covers most of the image?")


def test_repeated_letters_and_stray_capitals_are_read_right():
    doubled = "Which is it?\nA. A. The image shows a port.\nB. B. The image shows a farm."
    choice = parse_options(doubled)
    assert choice is not None and choice.options[0].text == "The image shows a port."
    us = "Is this the U.S. coast? A. yes B. no"
    choice = parse_options(us)
    assert choice is not None and [o.text for o in choice.options] == ["yes", "no"]
    assert format_choice(choice.options[1]) == "B. no"


def test_lower_case_options_are_read_with_capital_letters():
    for question in (
        "Which scene class is it? a. forest b. harbor c. beach d. freeway",
        "Which scene class is it?\na) forest\nb) harbor\nc) beach\nd) freeway",
    ):
        choice = parse_options(question)
        assert choice is not None and choice.letters == ["A", "B", "C", "D"]
        assert format_choice(choice.options[1]) == "B. harbor"
    assert parse_options("Which is it? a. forest") is None  # a lone lower-case marker is prose


def test_questions_without_options_are_not_multiple_choice():
    assert parse_options("Is there water in this image?") is None
    assert parse_options("A large harbour with boats: how many boats?") is None
    assert parse_options("Would plan A: a dam, flood the valley?") is None


@pytest.mark.parametrize(
    ("question", "reason"),
    [
        ("Which one?\nA. forest", "single option"),
        ("Which scene class best describes this image? A. harbor", "single option"),
        ("Which is it? Options: A) forest", "single option"),
        ("Which one? (A) forest (B) (C) water", "option B has no text"),
        (
            "Pick:\n" + "\n".join(f"{chr(65 + i)}. class {i}" for i in range(26)) + "\nA. again",
            "more than 26",
        ),
    ],
)
def test_unanswerable_option_lists_say_what_to_fix(question, reason):
    with pytest.raises(OptionsError, match=reason):
        parse_options(question)


def test_letters_past_d_are_read_when_the_question_lists_them():
    from skyeye.grounding.parse import parse_letter

    question = "Which class?\n" + "\n".join(f"{chr(65 + i)}. class {i}" for i in range(26))
    choice = parse_options(question)
    assert choice is not None and len(choice.letters) == 26
    letters = "".join(choice.letters)
    assert parse_letter("Z", letters) == "Z"
    assert parse_letter("The answer is (K).", letters) == "K"
    assert parse_letter("E. class 4", "ABCDE") == "E"
    assert parse_letter("E") is None  # a four-option question lists no E
    assert parse_letter("I think it is Q.", letters) == "Q"  # "I" before a word is the pronoun
    assert parse_letter("B or C", letters) is None
    with pytest.raises(ValueError, match="capitals"):
        parse_letter("a", "abc")
