"""Answers in model text: boxes, ``[SEG]`` phrases and the words of an answer, parsed.

This module holds the one parser of each answer kind (the one-copy test checks it): boxes,
``[SEG]`` phrases, and the words of an answer (yes/no, option letter, count, share, area); the
chat (`skyeye.chat.measured`) and evaluation (`skyeye.evaluation`) import them. Boxes and phrases
are read with the grammar's one token scanner (`skyeye.grounding.grammar`, which also writes
boxes; its names are re-exported here). The parsers never raise: model output is untrusted.
"""

from __future__ import annotations

import functools
import logging
import re
import string

from skyeye.constants import MCQ_LETTERS
from skyeye.grounding.grammar import (
    AFTER_MASK,
    PHRASE_END,
    PHRASE_START,
    SEG_TOKEN,
    GroundedBox,
    box_corners,
    format_box,
    format_boxes,
    grounding_tokens,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ANSWER_PARSERS",
    "AREA",
    "AREA_UNITS",
    "MEASURED_NOTE_FIGURES",
    "MEASURED_NOTE_OPEN",
    "PHRASE_END",
    "PHRASE_START",
    "SEG_TOKEN",
    "SHARE",
    "VERDICT",
    "GroundedBox",
    "box_corners",
    "format_box",
    "format_boxes",
    "parse_area_m2",
    "parse_boxes",
    "parse_count",
    "parse_letter",
    "parse_percent",
    "parse_seg_phrases",
    "parse_yes_no",
    "strip_grounding",
]


def _safe_text(text: object) -> str:
    return text if isinstance(text, str) else ""


def parse_boxes(text: str) -> list[GroundedBox]:
    """All boxes in ``text`` in reading order, with the phrase that names each.

    Never raises; a non-string gives ``[]``. See `skyeye.grounding.grammar` for the formats.
    """
    try:
        text = _safe_text(text)
        return [box for token in grounding_tokens(text) for box in token.boxes]
    except Exception:  # pragma: no cover - the contract is "never raise on model output"
        logger.exception("parse_boxes failed on a %d-character text; returning no boxes", len(text))
        return []


def parse_seg_phrases(text: str) -> list[str | None]:
    """The phrase of each ``[SEG]`` in ``text``, in order.

    A ``[SEG]`` takes the last ``<p>phrase</p>`` written after the previous ``[SEG]``
    (LISA style ``<p>the harbour</p> [SEG]``); without one its phrase is None.
    """
    try:
        text = _safe_text(text)
        out: list[str | None] = []
        pending: str | None = None
        for token in grounding_tokens(text):
            if token.kind == "phrase":
                pending = token.phrase
            elif token.kind == "seg":
                out.append(pending)
                pending = None
        return out
    except Exception:  # pragma: no cover
        logger.exception("parse_seg_phrases failed; returning no phrases")
        return []


# ---------------------------------------------------------------- answers
#: How the chat's note of measured figures opens (`skyeye.chat.measured.measured_note` writes it).
MEASURED_NOTE_OPEN = "(measured on the mask:"
_MEASURED_NOTE = re.compile(r"\s*" + re.escape(MEASURED_NOTE_OPEN) + r"[^)]*\)?")
#: The note with its figures named: ``phrase``, ``area`` (optional: "275 ha") and ``share``
#: ("10.5") in "(measured on the mask: water 275 ha, 10.5% of the valid pixels)".
MEASURED_NOTE_FIGURES = re.compile(
    r"\s*" + re.escape(MEASURED_NOTE_OPEN) + r"\s*(?P<phrase>[^()]*?)\s*"
    r"(?:(?P<area>[\d.,]+\s*(?:m²|ha|km²)),\s*)?(?P<share>[\d.]+)%\s*of the valid pixels\)"
)
# The looks-first opening of an answer: "<p>water</p> [SEG] " (skyeye-tiny: mask, then words).
_LEADING_MASK = re.compile(r"^\s*(?:<p>[^<]*</p>\s*)?(?:\[SEG\])?" + AFTER_MASK)
#: A yes/no sentence right after a ``[SEG]``: the mask's verdict ("<p>water</p> [SEG] Yes.").
VERDICT = re.compile(r"(\[SEG\]" + AFTER_MASK + r")(yes|no)\b([^.!?]*[.!?]?)", re.IGNORECASE)
_YES_NO = re.compile(r"\W*(yes|no)\b", re.IGNORECASE)

_NUMBER = r"(\d[\d,]*(?:\.\d+)?)"
#: A stated share of the image: "12 %", "12.5 percent", "3 per cent".
SHARE = re.compile(_NUMBER + r"\s*(%|percent\b|per cent\b)", re.IGNORECASE)
#: m² per unit of a stated ground area.
AREA_UNITS: dict[str, float] = {
    "ha": 1e4,
    "hectare": 1e4,
    "hectares": 1e4,
    "km²": 1e6,
    "km2": 1e6,
    "square kilometers": 1e6,
    "square kilometres": 1e6,
    "m²": 1.0,
    "m2": 1.0,
    "square meters": 1.0,
    "square metres": 1.0,
}
#: A stated ground area: "3.5 ha", "40 km²" (group 1 the number, group 2 the unit).
AREA = re.compile(
    _NUMBER
    + r"\s*("
    + "|".join(re.escape(u) for u in sorted(AREA_UNITS, key=len, reverse=True))
    + r")(?![\w²])",
    re.IGNORECASE,
)
_COUNT = re.compile(r"^\D*?(\d+)\b")


@functools.lru_cache(maxsize=64)
def _letter_rules(letters: str) -> tuple[re.Pattern[str], ...]:
    """The letter rules of `parse_letter` for the option letters ``letters`` ("ABCD", up to the
    26 of "A".."Z"): only a letter, a leading letter, "answer is X", "(X)", a standalone X."""
    if not letters or not set(letters) <= set(string.ascii_uppercase):
        raise ValueError(f"option letters must be capitals A-Z, got {letters!r}")
    one = "[" + "".join(sorted(set(letters))) + "]"
    return (
        re.compile(rf"^\W*\(?({one})\)?\W*$"),
        re.compile(rf"^\s*\(?({one})(?:[.):]|\s*$)"),
        re.compile(rf"(?:answer|option|choice)\s*(?:is|:)?\s*[:\-]?\s*\(?({one})\b", re.IGNORECASE),
        re.compile(rf"\(({one})\)"),
        re.compile(rf"(?<![\w'])({one})(?![\w'])"),
    )


def strip_grounding(text: object) -> str:
    """The words of an answer: without a leading mask (``<p>water</p> [SEG]``, the looks-first
    grammar) and without the chat's measured note; '' for a non-string."""
    text = _safe_text(text)
    return _MEASURED_NOTE.sub("", _LEADING_MASK.sub("", text, count=1)).strip()


def parse_yes_no(text: object) -> str | None:
    """'yes' / 'no': the word the answer opens with, after a leading mask; else None."""
    found = _YES_NO.match(strip_grounding(text))
    return found.group(1).lower() if found else None


def _number(raw: str) -> float:
    return float(raw.replace(",", ""))


def parse_percent(text: object) -> float | None:
    """The share (0..100) an answer states (`SHARE`, the first one); 'less than 1%' -> 0.5."""
    words = strip_grounding(text)
    if "less than 1%" in words.lower():
        return 0.5
    found = SHARE.search(words)
    return _number(found.group(1)) if found else None


def parse_area_m2(text: object) -> float | None:
    """The first ground area an answer states (`AREA`), in m²; None when there is none."""
    found = AREA.search(strip_grounding(text))
    return _number(found.group(1)) * AREA_UNITS[found.group(2).lower()] if found else None


def parse_count(text: object) -> int | None:
    """The first whole number of an answer ('3', 'There are 3.'), after a leading mask."""
    found = _COUNT.match(strip_grounding(text))
    return int(found.group(1)) if found else None


def parse_letter(text: object, letters: str = MCQ_LETTERS) -> str | None:
    """The option letter an answer picks, or None if it cannot be told.

    ``letters`` are the letters the question lists (default A-D; up to A-Z: pass
    `skyeye.grounding.options.MultipleChoice.letters` joined). Read after a leading mask. Rules,
    first that applies: (1) the answer is just a letter ("B", "(B)", "B."); (2) it starts with
    one followed by ".", ")" or ":" ("B. harbour", "C) 3"); (3) "answer/option/choice is B",
    "Answer: (C)"; (4) one letter in parentheses "(D)"; (5) exactly one distinct standalone
    listed capital in the text, not counting "A" used as an article (or "I" as a pronoun) before
    a lower-case word ("A large harbour with boats." picks nothing). Anything else, e.g. "B or
    C" (two letters: ambiguous) or a letter the question does not list, is None.
    """
    if not isinstance(text, str):
        return None
    only, leading, answer_is, paren, standalone = _letter_rules(letters)
    text = strip_grounding(text)
    for rx in (only, leading):
        m = rx.match(text)
        if m:
            return m.group(1)
    m = answer_is.search(text)
    if m and m.group(1) in letters:
        return m.group(1)
    parens = set(paren.findall(text))
    if len(parens) == 1:
        return parens.pop()
    found = set()
    for m in standalone.finditer(text):
        if m.group(1) in "AI" and re.match(r"\s+[a-z]", text[m.end() :]):
            continue  # "A large harbour", "I think": the article, the pronoun
        found.add(m.group(1))
    return found.pop() if len(found) == 1 else None


#: The one parser of each answer kind, by kind (the tasks of `skyeye.evaluation` name theirs).
ANSWER_PARSERS = {
    "yes_no": parse_yes_no,
    "letter": parse_letter,
    "count": parse_count,
    "percent": parse_percent,
    "area": parse_area_m2,
    "boxes": parse_boxes,
    "text": strip_grounding,
}
