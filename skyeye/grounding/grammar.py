"""The grounding grammar in model text: boxes, phrases and ``[SEG]`` markers, scanned and written.

`grounding_tokens` is the one scanner of the grammar: `skyeye.grounding.parse` reads boxes and
``[SEG]`` phrases with it, `skyeye.chat.readable` turns the same tokens into words. `CUT_TOKEN`,
`LEADING_SEG` and `GRAMMAR_TOKEN` are the grammar's other rules (a token cut off at the end of an
answer, the looks-first opening, any token as written).

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

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from skyeye.constants import GROUNDING_TOKENS, SEG_TOKEN
from skyeye.constants import PHRASE_CLOSE as PHRASE_END
from skyeye.constants import PHRASE_OPEN as PHRASE_START

__all__ = [
    "AFTER_MASK",
    "CUT_TOKEN",
    "GRAMMAR_TOKEN",
    "LEADING_SEG",
    "PHRASE_END",
    "PHRASE_START",
    "SEG_TOKEN",
    "GroundedBox",
    "GroundingToken",
    "box_corners",
    "format_box",
    "format_boxes",
    "grounding_tokens",
    "seg_opening",
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


#: What may follow a mask before the words: spaces and light punctuation ("[SEG]. No.").
AFTER_MASK = r"[\s.:,;-]*"
#: The looks-first opening with its ``[SEG]``: "<p>water</p> [SEG] " (group ``phrase``, optional).
LEADING_SEG = re.compile(r"^\s*(?:<p>(?P<phrase>[^<]*)</p>\s*)?\[SEG\]" + AFTER_MASK)


def seg_opening(phrases: Sequence[str]) -> str:
    """The looks-first opening `LEADING_SEG` reads, written for ``phrases``:
    "<p>water</p> [SEG] <p>cloud</p> [SEG]"."""
    return " ".join(f"{PHRASE_START}{p}{PHRASE_END} {SEG_TOKEN}" for p in phrases)


#: Any grounding token written as is ("<p>", "</p>", "[SEG]"), e.g. one left unpaired.
GRAMMAR_TOKEN = re.compile("|".join(re.escape(t) for t in GROUNDING_TOKENS))
#: A grounding token cut off at the end of an answer (a stop string, the token limit):
#: "<p>wat", "{<12><3", "[SE".
CUT_TOKEN = re.compile(r"(?:<p>[^<]*(?:</?p?)?|<p?|\{[^}]*|\[(?:S(?:E(?:G)?)?)?)$")


@dataclass(frozen=True)
class GroundingToken:
    """One token of the grammar: ``kind`` "phrase" (``phrase`` its text, None when blank),
    "seg" (a ``[SEG]``) or "boxes" (one pair of braces or an LHRS list; ``boxes`` those read in
    it, each named by the last phrase before it); ``span`` its (start, end) in the text."""

    kind: Literal["phrase", "seg", "boxes"]
    span: tuple[int, int]
    phrase: str | None = None
    boxes: tuple[GroundedBox, ...] = ()


def grounding_tokens(text: str) -> Iterator[GroundingToken]:
    """The grammar's tokens of ``text`` in reading order. Braces are a token even when no box
    can be read in them; an LHRS list only when it reads as a box."""
    phrase: str | None = None
    for m in _TOKEN_RE.finditer(text):
        if m.group("phrase") is not None:
            phrase = m.group("phrase_text").strip() or None
            yield GroundingToken("phrase", m.span("phrase"), phrase=phrase)
        elif m.group("seg") is not None:
            yield GroundingToken("seg", m.span("seg"))
        elif m.group("brace") is not None:
            found = _boxes_in_brace(m.group("brace_body"), m.start("brace_body"), phrase)
            if len(found) == 1:  # the usual case: the span covers the braces too
                found = [replace(found[0], span=m.span("brace"))]
            yield GroundingToken("boxes", m.span("brace"), boxes=tuple(found))
        elif m.group("lhrs") is not None:
            box = _lhrs_box(m, phrase)
            if box is not None:
                yield GroundingToken("boxes", m.span("lhrs"), boxes=(box,))


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
