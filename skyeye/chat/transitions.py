"""Class transitions of a change answer, measured on the masks: "water gained 312 ha, water lost 4 ha".

A change answer's mask (`skyeye.chat.change_seg`) says *where* the place changed; what it changed
from and to is measured, never written by the LLM: the model's own mask decoder draws each class
the decoder knows on each date alone (one forward pass per date, the looks-first answer
``<p>water</p> [SEG] <p>cloud</p> [SEG] ...`` forced on a one-image question), and inside the
change mask

* gained = not the class before, the class after; lost = the class before, not after,

measured as every mask area is measured (`skyeye.grounding.geo.mask_area`: share of the valid
pixels, ground area on the grid's CRS). Pixels with a cloud or no data in *either* date are left
out of every figure, and the sentence says how much was left out and how clouds were found:

* by the spectral cloud test (`skyeye.grounding.clouds.pair_clouds`: the label rule's
  brightness / whiteness / HOT tests, snow and cirrus bands where there are any) when it can read
  both dates (reflectance by their value scaling, blue, green and red bands); the decoder is then
  not asked for clouds: on the clear-sky Berlin example (skyeye-tiny) it drew cloud over 15 % and
  cloud shadow over 46 % of the image (47 % together), the rule 0.007 %. The rule finds clouds,
  not their shadows;
* none on a radar pair (SAR sees through clouds);
* else (8-bit photos, a per-band stretch, no blue band) by the decoder's "cloud" and "cloud
  shadow" masks on each date, as before.

Which classes: those the question or the change phrase names (water, vegetation, built-up, bare;
by the words people use, `CLASS_WORDS`); for a general "what changed?" every one of them whose
gain or loss is a part of the place or of the change (`named_in_general`). A class this model's
decoder was not trained to outline (`GenerationSettings.mask_classes`) is never measured.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from skyeye.chat.class_question import class_reply
from skyeye.chat.counting import decoder_classes
from skyeye.chat.decoding import GenerationSettings
from skyeye.chat.measured import PRESENT_MIN_SHARE, format_area
from skyeye.grounding.clouds import CLOUDS_BY_RULE, pair_clouds
from skyeye.grounding.geo import MaskArea, mask_area
from skyeye.grounding.parse import parse_seg_phrases

if TYPE_CHECKING:
    from skyeye.chat.session import ChatReply, ChatSession

logger = logging.getLogger(__name__)

__all__ = [
    "CLASS_WORDS",
    "CHANGE_PART_MIN_SHARE",
    "CLOUDS_UNMASKED",
    "PART_MIN_PIXELS",
    "TRANSITION_CLASSES",
    "ClassTransition",
    "Transitions",
    "class_masks",
    "left_out_words",
    "measure_transitions",
    "named_classes",
    "named_in_general",
    "no_class_moved",
    "transition_amount",
    "transitions_note",
    "transitions_of",
]

#: The classes transitions are given for: the name said -> the mask decoder's phrase.
TRANSITION_CLASSES: dict[str, str] = {
    "water": "water",
    "vegetation": "vegetation",
    "built-up": "artificial surface",
    "bare": "bare land",
}
#: Words that name each class in a question or a change phrase (whole words, any case).
CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "water": ("water", "lake", "lakes", "river", "rivers", "flood", "flooded", "reservoir"),
    "vegetation": ("vegetation", "forest", "forests", "trees", "tree", "grass", "green"),
    "built-up": ("built-up", "built up", "buildings", "building", "urban", "houses", "city"),
    "bare": ("bare", "bare land", "bare soil", "soil", "sand"),
}
#: The decoder's cloud phrases. A change answer never asks them (its clouds were wrong on clear
#: scenes: `skyeye.grounding.clouds`); bench/pair_clouds.py's baseline does.
CLOUD_PHRASES = ("cloud", "cloud shadow")


@dataclass
class ClassTransition:
    """One class inside the change mask: ``gained`` / ``lost`` areas (share of the valid pixels,
    ground area)."""

    name: str
    gained: MaskArea
    lost: MaskArea


@dataclass
class Transitions:
    """A change mask's transitions. excluded_share: share of the grid left out (cloud or no data
    in either date); cloud_method: how clouds were found (`CLOUDS_BY_RULE`,
    `CLOUDS_NOT_APPLICABLE` for SAR) or None (they could not be: no spectral test reads the
    dates); cloud_masked: cloud_method is not None; compared: (H, W) bool, the pixels counted
    (data and no cloud on both dates), None when not measured."""

    classes: list[ClassTransition] = field(default_factory=list)
    excluded_share: float = 0.0
    cloud_method: str | None = CLOUDS_BY_RULE
    general: bool = False
    compared: np.ndarray | None = None

    @property
    def cloud_masked(self) -> bool:
        return self.cloud_method is not None


#: A general change answer also names a class whose gain or loss is at least this share of the
#: change mask: on a whole Sentinel-2 tile `PRESENT_MIN_SHARE` of the compared area is 6,000 ha,
#: so a new 3,000-ha lake (0.3 % of the tile, most of the change) was never named.
CHANGE_PART_MIN_SHARE = 0.1
#: ... and at least `PRESENT_MIN_SHARE` of one image at the chat's read size (512² px: 1,311 px,
#: 13 ha at 10 m), so on images up to that size the rule is presence's alone: a sliver of a
#: small change is not named (naming them cost the held-out what-changed sentences 0.010
#: ROUGE-L).
PART_MIN_PIXELS = round(PRESENT_MIN_SHARE * GenerationSettings.read_size**2)


def named_in_general(part_px: int, change_px: int, compared_px: int) -> bool:
    """Whether a general "what changed?" names a class's gain or loss of ``part_px`` pixels:
    at least `PRESENT_MIN_SHARE` of the ``compared_px`` pixels (a change of the place), or, on
    a larger scene, at least `CHANGE_PART_MIN_SHARE` of the ``change_px`` pixels of the change
    mask and `PART_MIN_PIXELS` (a large part of what changed, however small the change is
    beside the scene). One rule for the chat's and the whole scene's answers."""
    if part_px <= 0:
        return False
    if compared_px and part_px >= PRESENT_MIN_SHARE * compared_px:
        return True
    return part_px >= max(PART_MIN_PIXELS, CHANGE_PART_MIN_SHARE * change_px)


def left_out_words(cloud_method: str | None) -> str:
    """What a change answer's left-out pixels are, by how clouds were found: "cloud by a spectral
    test, or no data, in either date" (one wording for the chat's and the scene's sentences)."""
    if cloud_method == CLOUDS_BY_RULE:
        return "cloud by a spectral test, or no data, in either date"
    return "no data in either date"


def no_class_moved(general: bool) -> str:
    """What a change answer says when no class is listed: "no water, vegetation, built-up or
    bare land gained or lost" and, for a general question (which lists every class that moved
    by `PRESENT_MIN_SHARE` of the compared area or more, `named_in_general`), that threshold: a
    class that moved less did move, so the words must not say nothing did."""
    least = f" {100 * PRESENT_MIN_SHARE:.1f} % or more" if general else ""
    return f"no water, vegetation, built-up or bare land gained or lost{least}"


#: Said when clouds could not be found (``cloud_method`` None).
CLOUDS_UNMASKED = (
    "clouds could not be masked (no spectral test reads these bands or values, e.g. 8-bit "
    "photos; the decoder's cloud masks are not used: they were wrong on clear scenes)"
)


def measure_transitions(
    change: np.ndarray,
    before: dict[str, np.ndarray],
    after: dict[str, np.ndarray],
    valid: np.ndarray,
    *,
    transform: Any = None,
    crs: Any = None,
) -> list[ClassTransition]:
    """Gained / lost of each class inside ``change`` (all (H, W) bool on one grid).

    before / after: class name -> its mask on each date; valid: pixels counted (both dates have
    data and no cloud). Areas as `mask_area` measures them on the grid (``transform``, ``crs``).
    """
    out = []
    inside = change.astype(bool) & valid.astype(bool)
    for name in before:
        b, a = before[name].astype(bool), after[name].astype(bool)
        gained, lost = inside & ~b & a, inside & b & ~a
        out.append(
            ClassTransition(
                name,
                mask_area(gained, transform=transform, crs=crs, valid=valid),
                mask_area(lost, transform=transform, crs=crs, valid=valid),
            )
        )
    return out


def class_masks(session: ChatSession, index: int, phrases: list[str]) -> dict[str, np.ndarray]:
    """Masks of ``phrases`` on image ``index`` of the session, asked of that image alone with
    the class question (`skyeye.chat.class_question`; the conversation is not changed):
    phrase -> (H, W) bool on the image's grid."""
    if not phrases:
        return {}
    reply = class_reply(session, phrases, index)
    return {p: m for p, m in zip(reply.mask_phrases, reply.masks, strict=True) if p is not None}


def named_classes(text: str) -> list[str]:
    """The transition classes ``text`` names by `CLASS_WORDS` ("forest lost" -> ["vegetation"])."""
    return [
        name
        for name, words in CLASS_WORDS.items()
        if any(re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE) for w in words)
    ]


def transitions_of(session: ChatSession, prompt: str, reply: ChatReply) -> Transitions | None:
    """The transitions inside the reply's first change mask, or None (no change mask, or no
    class the decoder knows to measure). Stored in ``reply.transitions``."""
    k = next((i for i, p in enumerate(reply.mask_pairs) if p is not None), None)
    if k is None or session.model.mask_head is None:
        return None
    b, a = reply.mask_pairs[k]  # type: ignore[misc]
    known = set(decoder_classes(session.settings.mask_classes, session.model.config))
    phrases = " ".join(p for p in parse_seg_phrases(reply.text) if p)
    names = named_classes(f"{prompt} {phrases}")
    general = not names
    names = [n for n in (names or TRANSITION_CLASSES) if TRANSITION_CLASSES[n] in known]
    if not names:
        return None
    img_b, img_a = session.images[b], session.images[a]
    by_rule = pair_clouds(session.processor.image_processor, [img_b, img_a])
    # Clouds by the spectral test where it reads both dates, else none masked (and said). The
    # decoder's cloud masks are never asked: they covered ~45 % of a clear Sentinel-2 scene and
    # 20-35 % of clear AirChange aerial pairs (its change gIoU 0.281 without them, 0.092 with).
    method = by_rule[1] if by_rule is not None else None
    # Every known class is asked each time, whatever the question names: a [SEG]'s state reads
    # the phrases asked before it, so asking fewer classes drew other cloud masks (on Landsat
    # 2000/2020, 92.6 % of the pair left out as cloud for one class against 31.7 % for all).
    decoded = [c for c in TRANSITION_CLASSES.values() if c in known]
    before = class_masks(session, b, decoded)
    after = class_masks(session, a, decoded)
    valid = img_b.valid_mask & img_a.valid_mask
    if by_rule is not None:
        valid &= ~by_rule[0][0] & ~by_rule[0][1]
    change = reply.masks[k]
    if change.shape != valid.shape:
        logger.info("the change mask is not on the images' grid: no transitions measured")
        return None
    georeferenced = img_a.crs is not None and img_a.transform is not None
    measured = measure_transitions(
        change,
        {n: before[TRANSITION_CLASSES[n]] for n in names},
        {n: after[TRANSITION_CLASSES[n]] for n in names},
        valid,
        transform=img_a.transform if georeferenced else None,
        crs=img_a.crs if georeferenced else None,
    )
    if general:
        change_px, compared_px = int((change & valid).sum()), int(valid.sum())
        measured = [
            t
            for t in measured
            if any(named_in_general(p.pixels, change_px, compared_px) for p in (t.gained, t.lost))
        ]
    excluded = 1.0 - float(valid.mean()) if valid.size else 0.0
    transitions = Transitions(measured, excluded, method, general, valid)
    reply.transitions = transitions
    return transitions


def transition_amount(m2: float | None, share: float, unit: str | None = None) -> str:
    """How a transition's size is said: its ground area ("312 ha"; in ``unit`` when the question
    asked one) on a georeferenced grid, else its share of the compared area ("5.0 % of the
    compared area"; "< 0.1 %" for a few pixels, which one decimal would print as a misleading
    0.0)."""
    if m2 is not None:
        return format_area(m2, unit)
    percent = 100 * share
    said = "< 0.1" if 0 < percent < 0.05 else f"{percent:.1f}"
    return f"{said} % of the compared area"


def transitions_note(session: ChatSession, prompt: str, reply: ChatReply) -> str:
    """The sentence of a change answer's measured transitions ('' when there is none):
    "Measured on the masks: water gained 312 ha, water lost 4.0 ha; 3.1% of the area (cloud by a
    spectral test, or no data, in either date) left out." Shares of the compared area stand in
    for areas without a georeference."""
    t = transitions_of(session, prompt, reply)
    if t is None:
        return ""
    if t.classes:
        parts = [
            f"{c.name} gained {transition_amount(c.gained.m2, c.gained.share)}, "
            f"{c.name} lost {transition_amount(c.lost.m2, c.lost.share)}"
            for c in t.classes
        ]
        text = "Measured on the masks: " + "; ".join(parts)
    else:
        text = "Measured on the masks: " + no_class_moved(t.general)
    if t.excluded_share > 0:
        left = left_out_words(t.cloud_method)
        text += f"; {100 * t.excluded_share:.1f}% of the area ({left}) left out"
    if not t.cloud_masked:
        text += f"; {CLOUDS_UNMASKED}"
    return text + "."
