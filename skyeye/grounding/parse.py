"""Boxes, phrases, ``[SEG]`` markers and answers in model text: parse and format.

This module holds the one parser of each answer kind (the one-copy test checks it): boxes,
``[SEG]`` phrases, and the words of an answer (yes/no, option letter, count, share, area); the
chat (`skyeye.chat.measured`) and evaluation (`skyeye.evaluation`) import them.

Text conventions (GeoChat / MiniGPT-v2 / SkyEyeGPT compatible, see DESIGN.md):

* ``{<x1><y1><x2><y2>}``: integers (floats are accepted) on a 0-100 grid of the image,
  x to the right, y down. Optional angle ``{<x1><y1><x2><y2>|<θ>}`` in degrees.
* Several boxes: ``{...}{...}``, or ``<delim>`` between boxes, inside one pair of braces
  (``{<a><b><c><d><delim><e><f><g><h>}``) or between braces.
* ``<p>phrase</p>`` names the boxes that follow it, up to the next ``<p>``.
* LHRS-style ``[x1, y1, x2, y2]``. Rule: if every value is <= 1 and at least one is written
  with a decimal point (``[0.12, 0.3, 0.5, 0.9]``) the values are already normalised 0..1;
  otherwise they are on the 0-100 grid (``[12, 30, 50, 90]``, ``[0, 0, 1, 1]`` is a tiny
  box in the top-left corner). A list with any value > 100 is not read as a box (it is most
  likely in pixels of an unknown image size).

Angle convention: the unrotated box is rotated about its centre by θ degrees, positive θ
counter-clockwise as seen on the image (north-up imagery: from east towards north). The
rotation happens in pixel space, so it needs the image size (see :func:`box_corners`).

The parser never raises: model output is untrusted. Out-of-range coordinates are clamped
to the image, swapped corners are reordered, and incomplete or non-numeric boxes (e.g. a
truncated answer) are skipped.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import string
from dataclasses import dataclass, replace

from skyeye.constants import MCQ_LETTERS, SEG_TOKEN
from skyeye.constants import PHRASE_CLOSE as PHRASE_END
from skyeye.constants import PHRASE_OPEN as PHRASE_START

logger = logging.getLogger(__name__)

__all__ = [
    "ANSWER_PARSERS",
    "AREA",
    "AREA_UNITS",
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


@dataclass(frozen=True)
class GroundedBox:
    """One box in normalised image coordinates (0..1, x right, y down).

    ``angle`` is in degrees (None for an axis-aligned box), ``phrase`` the ``<p>`` text
    that named it, ``span`` its (start, end) character offsets in the parsed text.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    angle: float | None = None
    phrase: str | None = None
    span: tuple[int, int] = (0, 0)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)


_NUM = r"[-+]?\s*(?:\d+(?:\.\d*)?|\.\d+)"
# One token of interest; the scanner walks them in text order.
_TOKEN_RE = re.compile(
    r"(?P<phrase><p>(?P<phrase_text>[^<]*)</p>)"
    r"|(?P<seg>\[SEG\])"
    r"|(?P<brace>\{(?P<brace_body>[^{}]*)(?:\}|$))"
    r"|(?P<lhrs>\[\s*(?P<l1>" + _NUM + r")\s*,\s*(?P<l2>" + _NUM + r")\s*,\s*(?P<l3>" + _NUM + r")"
    r"\s*,\s*(?P<l4>" + _NUM + r")\s*\])",
    re.DOTALL,
)
# Inside braces: <n> values, an optional |<angle>, <delim> separators.
_ANGLE_BOX_RE = re.compile(
    r"<\s*(?P<a>" + _NUM + r")\s*>\s*<\s*(?P<b>" + _NUM + r")\s*>\s*"
    r"<\s*(?P<c>" + _NUM + r")\s*>\s*<\s*(?P<d>" + _NUM + r")\s*>"
    r"(?:\s*\|\s*<\s*(?P<t>" + _NUM + r")\s*>)?"
)


def _to_float(s: str) -> float | None:
    try:
        v = float(s.replace(" ", ""))
    except (ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def _make_box(
    vals: list[float], scale: float, angle: float | None, phrase: str | None, span: tuple[int, int]
) -> GroundedBox:
    x1, y1, x2, y2 = (min(max(v / scale, 0.0), 1.0) for v in vals)
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    return GroundedBox(x1, y1, x2, y2, angle=angle, phrase=phrase, span=span)


def _boxes_in_brace(body: str, offset: int, phrase: str | None) -> list[GroundedBox]:
    """Boxes written inside one pair of braces; ``offset`` is where ``body`` starts.

    ``<delim>`` needs no handling of its own: it is not a ``<number>`` so the scan skips it.
    """
    out: list[GroundedBox] = []
    for m in _ANGLE_BOX_RE.finditer(body):
        vals = [_to_float(m.group(k)) for k in "abcd"]
        if any(v is None for v in vals):
            continue
        angle = _to_float(m.group("t")) if m.group("t") is not None else None
        span = (offset + m.start(), offset + m.end())
        out.append(_make_box(vals, 100.0, angle, phrase, span))  # type: ignore[arg-type]
    return out


def _lhrs_box(m: re.Match[str], phrase: str | None) -> GroundedBox | None:
    raw = [m.group(k) for k in ("l1", "l2", "l3", "l4")]
    vals = [_to_float(r) for r in raw]
    if any(v is None for v in vals):
        return None
    if any(v > 100.0 for v in vals):  # type: ignore[operator]
        return None
    normalised = all(v <= 1.0 for v in vals) and any("." in r for r in raw)  # type: ignore[operator]
    return _make_box(vals, 1.0 if normalised else 100.0, None, phrase, m.span("lhrs"))  # type: ignore[arg-type]


def _safe_text(text: object) -> str:
    return text if isinstance(text, str) else ""


def parse_boxes(text: str) -> list[GroundedBox]:
    """All boxes in ``text`` in reading order, with the phrase that names each.

    Never raises; a non-string gives ``[]``. See the module docstring for the formats.
    """
    try:
        text = _safe_text(text)
        boxes: list[GroundedBox] = []
        phrase: str | None = None
        for m in _TOKEN_RE.finditer(text):
            if m.group("phrase") is not None:
                phrase = m.group("phrase_text").strip() or None
            elif m.group("brace") is not None:
                found = _boxes_in_brace(m.group("brace_body"), m.start("brace_body"), phrase)
                if len(found) == 1:  # the usual case: the span covers the braces too
                    found = [replace(found[0], span=m.span("brace"))]
                boxes.extend(found)
            elif m.group("lhrs") is not None:
                box = _lhrs_box(m, phrase)
                if box is not None:
                    boxes.append(box)
        return boxes
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
        for m in _TOKEN_RE.finditer(text):
            if m.group("phrase") is not None:
                pending = m.group("phrase_text").strip() or None
            elif m.group("seg") is not None:
                out.append(pending)
                pending = None
        return out
    except Exception:  # pragma: no cover
        logger.exception("parse_seg_phrases failed; returning no phrases")
        return []


def _grid(v: float) -> int:
    return int(round(min(max(v, 0.0), 1.0) * 100))


def format_box(box: GroundedBox) -> str:
    """``{<x1><y1><x2><y2>}`` (or with ``|<θ>``) on the 0-100 grid; the phrase is not written."""
    s = f"{{<{_grid(box.x1)}><{_grid(box.y1)}><{_grid(box.x2)}><{_grid(box.y2)}>"
    if box.angle is not None:
        s += f"|<{int(round(box.angle))}>"
    return s + "}"


def format_boxes(boxes: list[GroundedBox]) -> str:
    """Boxes as text; a ``<p>phrase</p>`` is written before each run of boxes sharing a phrase.

    ``parse_boxes(format_boxes(b))`` gives back ``b`` up to the 0-100 grid (and integer angles).
    """
    parts: list[str] = []
    current: str | None = None
    for box in boxes:
        if box.phrase is not None and box.phrase != current:
            if parts:
                parts.append(" ")
            parts.append(f"{PHRASE_START}{box.phrase}{PHRASE_END} ")
            current = box.phrase
        parts.append(format_box(box))
    return "".join(parts)


def box_corners(
    box: GroundedBox, width: float = 1.0, height: float = 1.0
) -> list[tuple[float, float]]:
    """The four corners (x, y) of ``box`` in a ``width`` x ``height`` pixel frame.

    Order: top-left, top-right, bottom-right, bottom-left of the unrotated box (clockwise on
    screen), then rotated about the centre by ``box.angle`` (positive = counter-clockwise on
    screen, i.e. with y pointing down). Pass the image's (W, H) so that rotation happens in
    square pixels; the default 1 x 1 treats the image as square.
    """
    x1, x2 = box.x1 * width, box.x2 * width
    y1, y2 = box.y1 * height, box.y2 * height
    pts = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    if not box.angle:
        return pts
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    t = math.radians(box.angle)
    c, s = math.cos(t), math.sin(t)
    # Counter-clockwise on screen with y down: (1, 0) -> (cos t, -sin t).
    return [(cx + (x - cx) * c + (y - cy) * s, cy - (x - cx) * s + (y - cy) * c) for x, y in pts]


# ---------------------------------------------------------------- answers
#: How the chat's note of measured figures opens (`skyeye.chat.measured.measured_note` writes it).
MEASURED_NOTE_OPEN = "(measured on the mask:"
_MEASURED_NOTE = re.compile(r"\s*" + re.escape(MEASURED_NOTE_OPEN) + r"[^)]*\)?")
# What may follow a mask before the words: spaces and light punctuation ("[SEG]. No.").
_AFTER_MASK = r"[\s.:,;-]*"
# The looks-first opening of an answer: "<p>water</p> [SEG] " (skyeye-tiny: mask, then words).
_LEADING_MASK = re.compile(r"^\s*(?:<p>[^<]*</p>\s*)?(?:\[SEG\])?" + _AFTER_MASK)
#: A yes/no sentence right after a ``[SEG]``: the mask's verdict ("<p>water</p> [SEG] Yes.").
VERDICT = re.compile(r"(\[SEG\]" + _AFTER_MASK + r")(yes|no)\b([^.!?]*[.!?]?)", re.IGNORECASE)
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
