"""Change questions answered by measurement: "what changed between these dates?".

The embedded LLM was not trained to write a change answer, so the chat does not ask it to: when

1. the question's images (the latest user turn that carried images, `latest_image_group`) are
   two or more images on one grid (dated images of one place are put there by
   `skyeye.chat.multi_date.prepare_dated_images`), and
2. the question asks about change (`read_change_question`: "what changed", "did anything
   change", "where did water appear", "show where forest was lost", "how much water was gained,
   in hectares", ...),

the answer's opening is forced, as `skyeye.chat.class_question.mask_for` forces ``<p>water</p> [SEG]``:
``<p>changed land cover</p> [SEG]``, or a class's own change phrase (``<p>new water</p> [SEG]``,
``<p>lost vegetation</p> [SEG]``: the phrases the change records write, `instruct_data.change`).
By the chat's one change rule (`skyeye.chat.change_seg`) that `[SEG]` goes to the model's change
decoder (`change_head`) with the pair (first, last). The change mask is then measured: pixels with
no data or a cloud on either date are left out of it (`skyeye.chat.transitions`), its area is
measured on what is left (the "compared area"), and the class transitions inside it are measured
on each date's class masks. The words say only what was measured::

    <p>changed land cover</p> [SEG] Yes — 38 ha changed (4.1 % of the compared area): water
    gained 12 ha, vegetation lost 20 ha; 3.0 % left out (cloud by a spectral test, or no data,
    in either date).

which reads (`skyeye.chat.readable`) "Yes — 38 ha changed (4.1 % of the compared area), mask 1:
water gained 12 ha, ...". A partial overlap is said (`skyeye.io.align.overlap_note`). A model
without a change decoder says so in one sentence and gives no number, and so does a general
change question about one image (`ONE_IMAGE`; "segment the flooded area" of one image stays a
mask question). One date all cloud over the
overlap is `NoComparableAreaError` (a ValueError: exit 2 in the terminal, a 400 in the server).

`ChatSession.stream` calls `change_reply` before generating (with `GenerationSettings.measure`;
off, the raw LLM answers). `ask_change` and `change_summary` are for callers that want the
change answer and its figures as data (the server's and MCP's JSON, the demo's before/after view).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skyeye.chat.change_seg import CHANGE_WORDS, question_images
from skyeye.chat.class_question import mask_for
from skyeye.chat.measured import PRESENT_MIN_SHARE, asked_unit, format_area
from skyeye.chat.reply import ChatReply
from skyeye.chat.transitions import (
    CLOUDS_UNMASKED,
    TRANSITION_CLASSES,
    Transitions,
    left_out_words,
    named_classes,
    no_class_moved,
    transition_amount,
    transitions_of,
)
from skyeye.errors import NoComparableAreaError
from skyeye.grounding.change import shared_bands
from skyeye.grounding.geo import MaskArea, mask_area
from skyeye.grounding.grammar import seg_opening
from skyeye.io.align import overlap_note
from skyeye.io.dates import date_label

if TYPE_CHECKING:
    from skyeye.chat.session import ChatSession
    from skyeye.io.image import RasterImage

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CHANGE_QUESTION",
    "GENERAL_PHRASE",
    "NO_CHANGE_DECODER",
    "ChangeMeasure",
    "ChangeQuestion",
    "ask_change",
    "change_pair",
    "change_reply",
    "change_summary",
    "read_change_question",
]

DEFAULT_CHANGE_QUESTION = "What changed between these dates?"
#: The change phrase of a question about change in general (the STAR records' phrase).
GENERAL_PHRASE = "changed land cover"
#: The answer of a model without a change decoder to a change question (never a number).
NO_CHANGE_DECODER = (
    "This model has no change decoder, so it cannot measure what changed between these images "
    "(load a model folder whose config has mask_change, or ask about one image at a time)."
)
#: The answer to a change question whose turn has one image: nothing to compare it with (the
#: LLM, asked anyway, described the one image: "Vegetation covers 713 ha").
ONE_IMAGE = (
    "Comparing dates needs two images of the same place, and this question has one: give the "
    "other date with it (two --image in the terminal, or /image before asking; two images in "
    "one message in the server or the demo) and ask again."
)
#: Said when an area was asked in a unit about images without a georeference.
NO_GROUND_AREA = (
    "No ground area: the images have no georeference (CRS and transform), so only shares can be "
    "measured; give GeoTIFFs of the place for areas."
)
#: Said when a date of the pair is unknown: the order the images came in is the order compared.
UNDATED_NOTE = (
    "the images' dates are not known, so the first image is taken as the earlier; give each "
    "image's date (--date in the terminal) to have the order checked"
)
#: The class named in a change phrase as the change records write it ("new buildings", OSCD).
RECORD_NAMES = {"water": "water", "vegetation": "vegetation", "built-up": "buildings",
                "bare": "bare land"}  # fmt: skip
#: Words of a change question beyond the change phrases' own (`CHANGE_WORDS`): verbs people ask
#: with ("where did water appear?").
QUESTION_WORDS = CHANGE_WORDS + (
    "appear", "appears", "disappear", "disappears", "different", "gains", "lose", "losses",
    "grew", "shrank", "vanished", "emerged",
)  # fmt: skip
_QUESTION_RE = re.compile(r"\b(" + "|".join(QUESTION_WORDS) + r")\b", re.IGNORECASE)
_GAINED = ("new", "gained", "gain", "gains", "appeared", "appear", "appears", "added", "built",
           "grown", "grew", "expanded", "flooded", "emerged")  # fmt: skip
_LOST = ("lost", "loss", "losses", "lose", "disappeared", "disappear", "disappears", "removed",
         "cleared", "demolished", "gone", "shrunk", "shrank", "deforested", "burned",
         "vanished")  # fmt: skip


def _said(words: tuple[str, ...], text: str) -> bool:
    return re.search(r"\b(" + "|".join(words) + r")\b", text, re.IGNORECASE) is not None


@dataclass(frozen=True)
class ChangeQuestion:
    """A change question as read: the change ``phrase`` to force, the transition class it names
    (``cls``, a `TRANSITION_CLASSES` key, or None), its ``direction`` ("gained" / "lost" /
    None) and the area ``unit`` it asks in ("ha", "km²", "m²", or None: `asked_unit`)."""

    phrase: str
    cls: str | None = None
    direction: str | None = None
    unit: str | None = None


def read_change_question(prompt: str) -> ChangeQuestion | None:
    """The change question ``prompt`` asks, or None when it does not ask about change.

    One class and one direction named ("where did water appear?", "how much forest was lost?")
    give that class's change phrase ("new water", "lost vegetation"); anything else the general
    ``changed land cover``.
    """
    if _QUESTION_RE.search(prompt) is None:
        return None
    names = named_classes(prompt)
    verbs = re.sub(r"built[- ]up", " ", prompt, flags=re.IGNORECASE)  # a class, not "built"
    gained, lost = _said(_GAINED, verbs), _said(_LOST, verbs)
    direction = "gained" if gained and not lost else "lost" if lost and not gained else None
    unit = asked_unit(prompt)
    if len(names) == 1 and direction is not None:
        name = RECORD_NAMES[names[0]]
        phrase = f"new {name}" if direction == "gained" else f"lost {name}"
        return ChangeQuestion(phrase, names[0], direction, unit)
    return ChangeQuestion(GENERAL_PHRASE, names[0] if len(names) == 1 else None, None, unit)


@dataclass
class ChangeMeasure:
    """What a change answer measured (``ChatReply.change``).

    mask: index of the change mask in the reply's masks; pair: its (before, after) images in
    ``ChatSession.images``; dates: their ISO dates (or None); area: the change mask inside the
    compared area (share of it, ground area); compared_share: share of the grid compared (data
    and no cloud on both dates); transitions: the classes gained / lost inside the mask (None
    when the decoder outlines none of them); overlap: share of the first image both dates cover
    (None when the images were not aligned); note: the partial-overlap sentence or None.
    """

    question: ChangeQuestion
    mask: int
    pair: tuple[int, int]
    dates: tuple[str | None, str | None]
    area: MaskArea
    compared_share: float
    transitions: Transitions | None
    overlap: float | None
    note: str | None

    @property
    def changed(self) -> bool:
        """The verdict: the mask covers at least `PRESENT_MIN_SHARE` of the compared area."""
        return self.area.share >= PRESENT_MIN_SHARE


def change_pair(session: ChatSession) -> tuple[int, int] | None:
    """(first, last) of the question's images when they are two or more on one grid, else None."""
    group, grids = question_images(session)  # the images change_seg pairs, by the same rule
    return (group[0], group[-1]) if len(group) >= 2 and len(set(grids)) == 1 else None


def _details(t: Transitions | None, question: ChangeQuestion) -> str:
    """'water gained 12 ha, vegetation lost 20 ha; 3.0 % left out (cloud by a spectral test, or
    no data, in either date)'."""
    if t is None:
        parts = "no class transitions (this model's decoder outlines none of the classes)"
    else:
        said = [
            f"{c.name} {verb} {transition_amount(area.m2, area.share, question.unit)}"
            for c in t.classes
            for verb, area in (("gained", c.gained), ("lost", c.lost))
            if area.pixels > 0 or question.cls is not None
        ]
        parts = ", ".join(said) or no_class_moved(t.general)
    excluded = 0.0 if t is None else t.excluded_share
    if t is not None and excluded > 0:
        parts += f"; {100 * excluded:.1f} % left out ({left_out_words(t.cloud_method)})"
    if t is not None and not t.cloud_masked:
        parts += f"; {CLOUDS_UNMASKED}"
    return parts


def _sentence(m: ChangeMeasure) -> str:
    share = f"{100 * m.area.share:.1f} % of the compared area"
    if not m.changed:
        share += f", under the {100 * PRESENT_MIN_SHARE:.1f} % that counts as a change"
    if m.area.m2 is not None:
        size = format_area(m.area.m2, m.question.unit)
        what = "changed" if m.question.phrase == GENERAL_PHRASE else f"of {m.question.phrase}"
        head = f"{size} {what} ({share})"
    else:
        head = f"{m.question.phrase} on {share}"
    text = f"{'Yes' if m.changed else 'No'} — {head}: {_details(m.transitions, m.question)}."
    if m.area.m2 is None and m.question.unit is not None:
        text += f" {NO_GROUND_AREA}"
    if m.note:
        text += f" {m.note[:1].upper()}{m.note[1:]}."
    return text


def _band_note(
    before: RasterImage, after: RasterImage, shared: list[tuple[int, int]], pair: tuple[int, int]
) -> str | None:
    """The sentence saying that the dates' bands differ (a 4-band date against a 3-band one),
    else None: the model reads each date with its own bands, so a band one date lacks can read
    as change (a NAIP pair: 6.59 ha with all four bands, 1.29 ha with NIR on one date only)."""
    if len(shared) == len(before.band_names) == len(after.band_names):
        return None

    def band(im: RasterImage, k: int) -> str:  # "R 0.64 µm": same names can differ in µm
        waves = im.wavelengths
        return im.band_names[k] + (f" {waves[k]:.2f} µm" if waves and waves[k] else "")

    only = [
        f"{', '.join(band(im, k) for k in range(len(im.band_names)) if k not in used)} "
        f"in image {i + 1} only"
        for im, i, used in (
            (before, pair[0], {p for p, _ in shared}),
            (after, pair[1], {q for _, q in shared}),
        )
        if len(used) < len(im.band_names)
    ]
    return (
        f"the dates' bands differ ({'; '.join(only)}): each date is read with its own bands, so "
        "what one lacks can show as change; give both dates the same bands to compare like with "
        "like"
    )


def _compared_note(n: int, dates: tuple[str | None, str | None]) -> str:
    """'compared: the first of the 3 images (1985-07-01) with the last (2020-07-01); ...'."""
    first, last = (f" ({d})" if d else "" for d in dates)
    return (
        f"compared: the first of the {n} images{first} with the last{last}; to compare others, "
        "ask about those two alone"
    )


def change_reply(session: ChatSession, prompt: str, inputs: Any) -> ChatReply | None:
    """The change answer to ``prompt`` (module docstring), or None when the question is not a
    change question about two or more images on one grid (the model then answers).

    inputs: the processor's inputs of the conversation with the question (as `mask_for` takes).
    Raises `NoComparableAreaError` when no pixel has data and no cloud on both dates,
    `MissingBandError` when the two dates share no band.
    """
    question = read_change_question(prompt)
    if question is None:
        return None
    pair = change_pair(session)
    if pair is None:
        # "What changed?" of one image: say so. A class's phrase of one image ("segment the
        # flooded area" of a radar scene) is a mask question; two images not on one grid
        # (undated photos): the LLM's answer.
        one = len(question_images(session)[0]) == 1 and question.phrase == GENERAL_PHRASE
        return ChatReply(text=ONE_IMAGE) if one else None
    if getattr(session.model, "change_head", None) is None:
        return ChatReply(text=NO_CHANGE_DECODER)
    b, a = pair
    # Dates with no band in common (radar against optical) have nothing to compare: one line
    # (a ValueError: exit 2 in the terminal, a 400 in the server), before any model work.
    shared = shared_bands(
        session.images[b], session.images[a], (f"image {b + 1}", f"image {a + 1}")
    )
    reply = mask_for(session, inputs, [question.phrase])
    k = next((i for i, p in enumerate(reply.mask_pairs) if p is not None), None)
    if k is None:  # change_seg did not pair it: say so rather than answer about one date
        logger.warning("the forced change [SEG] was not decoded as a change mask")
        return ChatReply(text=NO_CHANGE_DECODER)
    before, after = session.images[b], session.images[a]
    transitions = transitions_of(session, prompt, reply)
    compared = before.valid_mask & after.valid_mask
    if transitions is not None and transitions.compared is not None:
        compared = transitions.compared
    if not compared.any():
        raise NoComparableAreaError(
            f"{before.path or 'image 1'} and {after.path or 'the last image'} share no pixel "
            "with data and without cloud on both dates: give clearer images of the same place"
        )
    change = reply.masks[k] & compared  # the mask says only what was compared
    georeferenced = after.crs is not None and after.transform is not None
    area = mask_area(
        change,
        transform=after.transform if georeferenced else None,
        crs=after.crs if georeferenced else None,
        valid=compared,
    )
    reply.masks[k], reply.mask_areas[k] = change, area
    overlap = after.extra.get("overlap")
    dates = (date_label(before.datetime), date_label(after.datetime))
    notes = [overlap_note(overlap), _band_note(before, after, shared, (b, a))]
    group, _ = question_images(session)
    if len(group) > 2:  # the first and the last are compared: say which they are
        notes.append(_compared_note(len(group), dates))
    if None in dates:  # nothing checked the order: "gained" and "lost" read it as given
        notes.append(UNDATED_NOTE)
    reply.change = ChangeMeasure(
        question=question,
        mask=k,
        pair=(b, a),
        dates=dates,
        area=area,
        compared_share=float(compared.mean()),
        transitions=transitions,
        overlap=None if overlap is None else float(overlap),
        note="; ".join(n for n in notes if n) or None,
    )
    reply.text = f"{seg_opening([question.phrase])} {_sentence(reply.change)}"
    return reply


def ask_change(session: ChatSession, question: str = DEFAULT_CHANGE_QUESTION) -> ChatReply:
    """Ask a change question about the session's latest images (e.g. a before/after pair added
    with `ChatSession.add_image` after `prepare_dated_images`) and return the reply: its text in
    the model's grammar (`skyeye.chat.readable.render_readable` for the sentence), the change
    mask among ``reply.masks`` (``reply.change.mask``), the figures in ``reply.change`` (None
    for a model without a change decoder, whose text says so).

    Raises ValueError when ``question`` is not a change question (`read_change_question`), and
    whatever `ChatSession.ask` raises (`NoComparableAreaError`, `PromptTooLongError`, ...).
    """
    if read_change_question(question) is None:
        raise ValueError(
            f"{question!r} does not ask about change: ask e.g. {DEFAULT_CHANGE_QUESTION!r}"
        )
    return session.ask(question)


def change_summary(reply: ChatReply) -> dict[str, Any] | None:
    """A change answer's figures as JSON, or None for a reply without a change measurement:
    ``{"phrase", "mask", "images": [b, a], "dates", "changed", "area_m2",
    "fraction_of_compared_area", "compared_fraction", "excluded_fraction", "overlap", "note",
    "clouds_masked", "cloud_method",
    "transitions": [{"class", "gained_m2", "lost_m2", "gained_fraction", "lost_fraction"}]}``.

    The change mask's polygons are those of the reply's mask ``mask`` (`skyeye.chat.reply_geo`
    adds them as ``geojson``).
    """
    m: ChangeMeasure | None = reply.change
    if m is None:
        return None
    t = m.transitions
    return {
        "phrase": m.question.phrase,
        "mask": m.mask,
        "images": list(m.pair),
        "dates": list(m.dates),
        "changed": m.changed,
        "area_m2": m.area.m2,
        "fraction_of_compared_area": m.area.share,
        "compared_fraction": m.compared_share,
        "excluded_fraction": 1.0 - m.compared_share,
        "overlap": m.overlap,
        "note": m.note,
        "clouds_masked": None if t is None else t.cloud_masked,
        "cloud_method": None if t is None else t.cloud_method,
        "transitions": [
            {
                "class": c.name,
                "decoder_phrase": TRANSITION_CLASSES[c.name],
                "gained_m2": c.gained.m2,
                "lost_m2": c.lost.m2,
                "gained_fraction": c.gained.share,
                "lost_fraction": c.lost.share,
            }
            for c in (t.classes if t is not None else [])
        ],
    }
