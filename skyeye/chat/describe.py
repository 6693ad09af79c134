"""A description states measured shares, or none.

skyeye-tiny describing the bundled Sentinel-1 scene wrote "The remaining area (about 90%) is
other surface (none of: water, vegetation)" while the next question's mask measured water at
26.7 %. The LLM's figures in a description are guesses; the chat draws the masks the description
implies (one per mask class it names, `skyeye.chat.class_question.mask_for`) and then, sentence by
sentence:
- a sentence naming exactly one measured class gets that mask's share / area in place of its
  figures ("Water covers about 30% of the image" -> "Water covers 26.7% of the image");
- any other figure (several classes, "the remaining area", a class without a mask) is dropped,
  with its "about" and brackets: "The remaining area is other surface (none of: ...)".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from skyeye.chat.measured import format_area
from skyeye.grounding.geo import MaskArea
from skyeye.grounding.parse import AREA, SHARE

__all__ = ["asks_description", "classes_named", "state_description"]

_DESCRIBE = re.compile(
    r"\b(describe|description|caption|summari[sz]e|composition|what\s+does\s+(this|the)\s+"
    r"(image|scene|tile)\s+show|what\s+(is|can\s+you\s+see)\s+in\s+(this|the)\s+(image|scene))\b",
    re.IGNORECASE,
)
#: Words that may stand before a stated figure and go with it when it is restated or dropped.
HEDGES = ("about", "around", "roughly", "approximately", "nearly", "almost", "some", "~")
_HEDGE = r"(?:(?:" + "|".join(re.escape(h) for h in HEDGES) + r")\s*)?"
_FIGURE = re.compile(_HEDGE + r"(?:" + SHARE.pattern + r"|" + AREA.pattern + r")", re.IGNORECASE)
_BRACKETED = re.compile(r"\s*\(\s*" + _FIGURE.pattern + r"\s*\)", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])(\s+)")


def asks_description(question: str) -> bool:
    """True when ``question`` asks for a description of the image."""
    return _DESCRIBE.search(question) is not None


def classes_named(text: str, classes: tuple[str, ...]) -> list[str]:
    """The mask classes ``text`` names (whole words, case-insensitive), in the order given;
    a longer name wins over one it contains ('cloud shadow' is not also 'cloud')."""
    found: list[str] = []
    spans: list[tuple[int, int]] = []
    for name in sorted(classes, key=len, reverse=True):
        # "cloud-free" names no cloud
        for m in re.finditer(rf"\b{re.escape(name)}\b(?!-)", text, re.IGNORECASE):
            if any(a <= m.start() < b for a, b in spans):
                continue
            spans.append(m.span())
            if name not in found:
                found.append(name)
    return [c for c in classes if c in found]


def _measured(area: MaskArea, unit_is_area: bool, unit: str) -> str:
    if unit_is_area and area.m2 is not None:
        return format_area(area.m2)
    return f"{100 * area.share:.1f}%"


def _state(sentence: str, area: MaskArea) -> str:
    def figure(m: re.Match[str]) -> str:
        is_area = AREA.search(m.group(0)) is not None and SHARE.search(m.group(0)) is None
        return _measured(area, is_area, m.group(0))

    return _FIGURE.sub(figure, sentence)


def _drop(sentence: str) -> str:
    out = _BRACKETED.sub("", sentence)
    out = _FIGURE.sub("", out)
    out = re.sub(r"\s+([,.;:)])", r"\1", out)
    out = re.sub(r"\(\s*\)", "", out)
    # "Water covers of the image" once the figure is gone: "covers part of the image".
    out = re.sub(r"\b(covers|makes up|occupies)\s+(of|in)\b", r"\1 part \2", out)
    return re.sub(r"[ \t]{2,}", " ", out).strip()


def state_description(text: str, areas: Mapping[str, MaskArea], classes: tuple[str, ...]) -> str:
    """``text`` with every share / area either the measured one of the one class its sentence
    names (``areas``: class -> its mask's measurement) or dropped."""
    # The separators between sentences are kept as written, so the sentences before the first
    # figure are the answer's own text (the readable stream shows them while it is generated).
    parts = _SENTENCE.split(text.strip())
    out: list[str] = []
    for k in range(0, len(parts), 2):
        sentence, sep = parts[k], parts[k + 1] if k + 1 < len(parts) else ""
        if _FIGURE.search(sentence) is not None:
            named = classes_named(sentence, classes)
            if (
                len(named) == 1
                and named[0] in areas
                and not re.search(r"\b(remaining|rest|other)\b", sentence, re.IGNORECASE)
            ):
                sentence = _state(sentence, areas[named[0]])
            else:
                sentence = _drop(sentence)
        if sentence:
            out.append(sentence + sep)
    return "".join(out).strip()
