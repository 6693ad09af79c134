"""Shares, areas and yes/no in an answer are the ones measured on its mask, not the LLM's guess.

The LLM writes "about 30 % of the image is water"; the mask it drew covers 12.4 % of the valid
pixels. When an answer has exactly one mask, every share ("N %", "N percent") and area
("N ha", "N km²", "N m²") it states is replaced by the measured figure (same unit), and a short
note with the measured figures is appended for masks on georeferenced images.

A yes/no right after the mask (skyeye-tiny answers "is there water?" with
``<p>water</p> [SEG] Yes.``: it looks, then answers) is the mask's verdict: yes when the mask
covers at least ``PRESENT_MIN_SHARE`` of the valid pixels, or, when the question asks whether
the image is *mainly* the class (`asks_mainly`), at least half of them. When the LLM's word
disagrees, its sentence is replaced by a plain one ("No, there is no water.", "No, it is not
mainly water.").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from skyeye.grounding.geo import MaskArea

# One parser per answer kind (`skyeye.grounding.parse`): the shares, areas and yes/no read here
# are the ones evaluation reads.
from skyeye.grounding.parse import AREA as _AREA
from skyeye.grounding.parse import AREA_UNITS as _UNITS
from skyeye.grounding.parse import MEASURED_NOTE_OPEN
from skyeye.grounding.parse import SHARE as _SHARE
from skyeye.grounding.parse import VERDICT as _VERDICT

__all__ = [
    "MAINLY_MIN_SHARE",
    "PRESENT_MIN_SHARE",
    "asked_unit",
    "asks_mainly",
    "format_area",
    "measured_note",
    "state_measured",
    "state_verdict",
    "states_amount",
]

#: A mask covering at least this share of the valid pixels says "present". The training labels
#: call a class present from 1 % of a tile and absent at 0 %; half of 1 % leaves room for a few
#: stray pixels either way.
PRESENT_MIN_SHARE = 0.005
#: "Is this image mainly forest?" (EuroSAT's and UC Merced's scene questions) asks whether the
#: class is the larger part of the valid pixels, not whether there is any.
MAINLY_MIN_SHARE = 0.5
_MAINLY = re.compile(
    r"\b(?:mainly|mostly|predominantly|largely|primarily|chiefly|dominated\s+by)\b", re.IGNORECASE
)


def asks_mainly(question: str) -> bool:
    """True when ``question`` asks whether the image is mainly something ("mostly water?")."""
    return _MAINLY.search(question) is not None


def states_amount(text: str) -> bool:
    """True when ``text`` states a share ("12 %") or a ground area ("3.5 ha", "40 km²")."""
    return _SHARE.search(text) is not None or _AREA.search(text) is not None


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2g}" if value < 1 else f"{value:.2f}"


def _unit_words(unit: str) -> re.Pattern[str]:
    """The words a stated area in ``unit`` is read with (`skyeye.grounding.parse.AREA_UNITS`;
    a plural also in the singular), as a question may name the unit."""
    words = sorted((w for w, per in _UNITS.items() if per == _UNITS[unit]), key=len, reverse=True)
    either = "|".join(re.escape(w[:-1]) + "s?" if w.endswith("s") else re.escape(w) for w in words)
    return re.compile(rf"(?<!\w)({either})(?![\w²])", re.IGNORECASE)


#: The unit a question asks an area in ("how much ..., in hectares?"), by the words for it.
_ASKED_UNIT = [(unit, _unit_words(unit)) for unit in ("ha", "km²", "m²")]


def asked_unit(prompt: str) -> str | None:
    """The area unit ``prompt`` asks for ("ha", "km²", "m²"), or None when it names none (or
    more than one)."""
    units = [unit for unit, words in _ASKED_UNIT if words.search(prompt)]
    return units[0] if len(units) == 1 else None


def format_area(m2: float, unit: str | None = None) -> str:
    """A ground area in ``unit`` ("ha", "km²", "m²": the unit a question asked in) or else in
    the unit people read it in: m² below 1 ha, ha below 100 km², else km²."""
    if unit is not None:
        return f"{_fmt(m2 / _UNITS[unit])} {unit}"
    if m2 < 1e4:
        return f"{_fmt(m2)} m²"
    if m2 < 1e8:
        return f"{_fmt(m2 / 1e4)} ha"
    return f"{_fmt(m2 / 1e6)} km²"


def measured_note(area: MaskArea, phrase: str | None = None) -> str:
    """'(measured on the mask: water 45.6 ha, 12.3% of the valid pixels)'."""
    what = f"{phrase} " if phrase else ""
    size = f"{format_area(area.m2)}, " if area.m2 is not None else ""
    return f"{MEASURED_NOTE_OPEN} {what}{size}{100 * area.share:.1f}% of the valid pixels)"


def state_verdict(
    text: str,
    area: MaskArea,
    phrase: str | None,
    min_share: float = PRESENT_MIN_SHARE,
    mainly: bool = False,
) -> str:
    """Make a yes/no that follows the answer's ``[SEG]`` say what the mask measured; ``mainly``:
    the question asked whether the class covers most of the image (`asks_mainly`)."""
    found = _VERDICT.search(text)
    if found is None:
        return text
    present = area.share >= (MAINLY_MIN_SHARE if mainly else min_share)
    if (found.group(2).lower() == "yes") == present:
        return text
    what = phrase or "it"
    if mainly:
        plain = f"Yes, it is mainly {what}." if present else f"No, it is not mainly {what}."
    else:
        plain = f"Yes, there is {what}." if present else f"No, there is no {what}."
    return text[: found.start()] + found.group(1) + plain + text[found.end() :]


def state_measured(
    text: str,
    areas: Sequence[MaskArea | None],
    phrases: Sequence[str | None] = (),
    min_share: float = PRESENT_MIN_SHARE,
    mainly: bool = False,
) -> tuple[str, str]:
    """Rewrite stated shares/areas (and a yes/no after the mask, ``mainly`` as in
    `state_verdict`) with the measured ones; returns (text, note to append).

    Only with exactly one measured mask (with several, which figure belongs to which mask is not
    known). The note is empty when that mask has no georeference (no area in m²).
    """
    measured = [a for a in areas if a is not None]
    if len(measured) != 1:
        return text, ""
    area = measured[0]
    phrase = next((p for a, p in zip(areas, phrases, strict=False) if a is area), None)
    text = state_verdict(text, area, phrase, min_share, mainly)
    text = _SHARE.sub(lambda m: f"{100 * area.share:.1f}%", text)
    if area.m2 is not None:
        m2 = area.m2
        text = _AREA.sub(lambda m: f"{_fmt(m2 / _UNITS[m.group(2).lower()])} {m.group(2)}", text)
        return text, measured_note(area, phrase)
    return text, ""
