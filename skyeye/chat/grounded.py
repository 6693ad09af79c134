"""Every figure of an answer measured: counts, boxes and description shares from masks.

`ChatSession` calls `direct_answer` before generating (questions the reader answers: sensor,
SAR or optical, bands) and `measure_answer` after (what the answer's words must say):

- a count ("how many water bodies larger than 1 ha?") is the number of instances
  (`skyeye.grounding.instances`) of the class's own mask, one box each (a region class such as
  water or cloud: its connected regions; compact objects: touching ones split). That mask is
  always drawn by the class question on the question's image (`skyeye.chat.class_question`:
  "Segment all water." answered ``<p>water</p> [SEG]``, one forward pass), never by a `[SEG]`
  after the asker's words, which move it. A class the decoder has no mask for, or a model
  without a decoder: a plain sentence, never a number;
- a box of a class the decoder outlines ("the largest lake") is the instance box (the largest
  / smallest when asked, else all; rotated when asked) of that class's mask: the answer's own
  `[SEG]` of the class's name when it drew one (the model's segmentation answer to "outline the
  water"), else the class question's; a box asked of an answer that draws masks of other
  phrases is those masks' instance box; the LLM's own box stays only when no mask is drawn;
- a yes/no about a class ("is there a lake?", "is this image mainly forest?",
  `skyeye.chat.presence`) is the verdict of that class's own mask: the answer's `[SEG]` of the
  class's name when it drew that alone, else the class question's; a class the decoder does not
  outline ("mainly freeway?", which skyeye-tiny answered with a water mask) gets a plain
  sentence, never a guessed yes or no (one-image conversations);
- a description's shares and areas are the measured ones of the classes it names, or dropped
  (`skyeye.chat.describe`);
- otherwise shares, areas and yes/no after a mask as `skyeye.chat.measured.state_measured`;
  a change mask's class transitions follow (`skyeye.chat.transitions`).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from skyeye.chat.change_seg import question_images
from skyeye.chat.class_question import class_reply, mask_for
from skyeye.chat.counting import (
    BoxQuestion,
    CountQuestion,
    decoder_classes,
    read_box_question,
    read_count_question,
    singular,
)
from skyeye.chat.describe import asks_description, classes_named, state_description
from skyeye.chat.measured import asks_mainly, state_measured, states_amount
from skyeye.chat.modality import modality_answer
from skyeye.chat.named_image import image_words
from skyeye.chat.presence import PresenceQuestion, cannot_tell, read_presence_question
from skyeye.chat.scene_choice import scene_verdict
from skyeye.chat.transitions import transitions_note
from skyeye.constants import PHRASE_CLOSE, PHRASE_OPEN
from skyeye.errors import OptionsError
from skyeye.grounding.grammar import seg_opening
from skyeye.grounding.instances import (
    DEFAULT_MIN_PIXELS,
    Instance,
    mask_instances,
    splits_touching,
)
from skyeye.grounding.options import parse_options
from skyeye.grounding.parse import format_boxes, parse_boxes

if TYPE_CHECKING:
    from skyeye.chat.session import ChatReply, ChatSession

logger = logging.getLogger(__name__)

__all__ = ["direct_answer", "measure_answer", "rewrites_words"]


def _classes(session: ChatSession) -> tuple[str, ...]:
    return decoder_classes(session.settings.mask_classes, session.model.config)


def rewrites_words(prompt: str) -> bool:
    """True when the chat may replace the answer's words once measured (a count, a box, a
    yes/no about a class): a readable stream then holds them back until the end. (A
    description's figures are restated sentence by sentence: its stream holds back only the
    sentence in progress.)"""
    return any(
        read(prompt) is not None
        for read in (read_count_question, read_box_question, read_presence_question)
    )


def direct_answer(prompt: str, session: ChatSession) -> str | None:
    """The answer the reader knows (`skyeye.chat.modality`), or None: the model answers."""
    try:
        choice = parse_options(prompt)
    except OptionsError:
        choice = None
    return modality_answer(prompt, session.images, choice)


def _take_masks(reply: ChatReply, source: ChatReply, keep: list[int]) -> None:
    """Make ``source``'s masks ``keep`` (indices) ``reply``'s only masks."""
    reply.masks = [source.masks[k] for k in keep]
    reply.mask_phrases = [source.mask_phrases[k] for k in keep]
    reply.mask_images = [source.mask_images[k] for k in keep]
    reply.mask_areas = [source.mask_areas[k] for k in keep]
    reply.mask_pairs = [source.mask_pairs[k] for k in keep if k < len(source.mask_pairs)]


def _class_mask(reply: ChatReply, phrase: str) -> int | None:
    """The answer's mask of the class ``phrase`` itself. A `[SEG]` of another word for it
    ("lake" for water) is not one: the decoder learnt its classes' own names (on the Berlin
    example "lake" drew 28 % of the image, fields included, where "water" draws 10.5 %)."""
    for k, said in enumerate(reply.mask_phrases):
        if said is not None and said.strip().lower() == phrase:
            return k
    return None


def _keep_class_mask(
    session: ChatSession, reply: ChatReply, phrase: str, *, answers_own: bool
) -> bool:
    """Make the class ``phrase``'s own mask the reply's only mask: with ``answers_own``, the
    answer's `[SEG]` of the class's name when it drew one; else the class question's
    (`skyeye.chat.class_question`, on the question's image alone). False, the reply untouched,
    when none was drawn."""
    k = _class_mask(reply, phrase) if answers_own else None
    source = reply if k is not None else class_reply(session, [phrase])
    if not source.masks:
        return False
    _take_masks(reply, source, [k or 0])
    return True


def _add_masks(session: ChatSession, reply: ChatReply, inputs: Any, phrases: list[str]) -> int:
    """Append the masks of ``phrases`` (forced looks-first openings, `mask_for`) to ``reply``;
    nothing when the model draws no masks or there is no image. Returns how many were added."""
    if not phrases or session.model.mask_head is None or not session.images:
        return 0
    before = len(reply.masks)
    forced = mask_for(session, inputs, phrases)
    for k, phrase in enumerate(forced.mask_phrases):
        if phrase is None:
            continue
        reply.masks.append(forced.masks[k])
        reply.mask_phrases.append(phrase)
        reply.mask_images.append(forced.mask_images[k])
        reply.mask_areas.append(forced.mask_areas[k])
    return len(reply.masks) - before


def _count(session: ChatSession, q: CountQuestion, reply: ChatReply, inputs: Any) -> str:
    classes = _classes(session)
    if q.phrase is None:
        return (
            f"I cannot count {q.words}: this model's mask decoder was not trained to outline "
            f"them (it outlines {', '.join(classes[:6])}, ...), and I will not guess a number."
        )
    if session.model.mask_head is None or not session.images:
        return f"I cannot count {q.words}: this model draws no masks to count on."
    # Always the class question's mask: a [SEG] the answer drew after "how many lakes ..." read
    # those words (held-out counts, exact: 53.1 % against 50.0 % on the answer's own mask).
    if not _keep_class_mask(session, reply, q.phrase, answers_own=False):
        return f"I cannot count {q.words}: no mask could be drawn for {q.phrase}."
    mask, area = reply.masks[0], reply.mask_areas[0]
    min_pixels, caveat = q.min_pixels or DEFAULT_MIN_PIXELS, ""
    if q.min_m2 is not None:
        pixels = int(mask.sum())
        if area.m2 is None:
            caveat = (
                f" (the image has no georeference, so '{q.size_words}' could not be applied: "
                f"every region of at least {min_pixels} pixels is counted)"
            )
        elif pixels > 0:  # an empty mask on a georeferenced image: 0, with no caveat
            min_pixels = max(1, int(-(-q.min_m2 // (area.m2 / pixels))))
    instances = mask_instances(mask, min_pixels=min_pixels, phrase=q.phrase)
    reply.boxes = [i.box for i in instances]
    n = len(instances)
    size = f" {q.size_comparison} {q.size_words}" if q.size_words and not caveat else ""
    verb, words = ("is", singular(q.words)) if n == 1 else ("are", q.words)
    return f"{seg_opening([q.phrase])} There {verb} {n} {words}{size}{caveat}."


#: Phrase tags left at the end of an answer once their boxes are removed.
_DANGLING_PHRASES = re.compile(rf"(?:\s*{re.escape(PHRASE_OPEN)}[^<]*{re.escape(PHRASE_CLOSE)})+$")


def _pick(instances: list[Instance], which: str) -> list[Instance]:
    if not instances or which == "all":
        return instances
    key = (lambda i: i.pixels) if which == "largest" else (lambda i: -i.pixels)
    return [max(instances, key=key)]


def _boxes(q: BoxQuestion, reply: ChatReply, classes: tuple[str, ...]) -> str:
    from skyeye.chat.counting import mask_class

    named = [
        k for k, p in enumerate(reply.mask_phrases) if p and mask_class(p, classes) == q.phrase
    ]
    chosen: list[Instance] = []
    for k in named or range(len(reply.masks)):  # the masks of the phrase asked, else all
        said = reply.mask_phrases[k]
        # A region class ("the largest lake") is boxed whole, a compact object per blob.
        cls = (mask_class(said, classes) if said else None) or said or q.phrase
        chosen += mask_instances(
            reply.masks[k],
            rotated=q.rotated,
            phrase=said or q.phrase,
            split_touching=splits_touching(cls),
        )
    chosen = _pick(chosen, q.which)
    reply.boxes = [i.box for i in chosen]
    text = reply.text
    for box in reversed(parse_boxes(text)):  # the LLM's boxes give way to the measured ones
        text = text[: box.span[0]] + text[box.span[1] :]
    text = _DANGLING_PHRASES.sub("", text.strip())  # "<p>lake</p>" whose box was taken away
    if not chosen:
        return f"{text} (the mask holds no region to box)".strip()
    return f"{text} {format_boxes(reply.boxes)}".strip()


def measure_answer(
    session: ChatSession, prompt: str, reply: ChatReply, inputs: Any
) -> tuple[str, str]:
    """The answer's text with every figure measured, and a note to append (may be '')."""
    classes = _classes(session)
    count = read_count_question(prompt, classes)
    if count is not None:
        return _count(session, count, reply, inputs), ""
    box = read_box_question(prompt, classes)
    measurable = session.model.mask_head is not None and bool(session.images)
    if box is not None and box.phrase is not None and measurable:
        # The box of a class the decoder outlines is measured on that class's own mask: the
        # answer is that mask and its boxes. An answer that drew it ("Please outline the water."
        # answered <p>water</p> [SEG]) is the model's segmentation answer, kept; else the class
        # question's (not one forced after the asker's words: held-out Acc@0.5 5.6 -> 33.3 %).
        if _keep_class_mask(session, reply, box.phrase, answers_own=True):
            reply.text = seg_opening([box.phrase])
    if box is not None and reply.masks:
        reply.text = _boxes(box, reply, classes)
    presence = read_presence_question(prompt, classes) if box is None else None
    if presence is not None and measurable and len(session.images) == 1:
        refused = _presence(session, presence, reply, classes)
        if refused is not None:
            return refused, ""
    if asks_description(prompt) and states_amount(reply.text) and len(reply.masks) <= 1:
        return _describe(session, reply, inputs, classes), measured_image_note(session, reply)
    mainly = asks_mainly(prompt)
    text, note = state_measured(reply.text, reply.mask_areas, reply.mask_phrases, mainly=mainly)
    # A change mask's class transitions, measured on each date's class masks.
    change = transitions_note(session, prompt, reply) if any(reply.mask_pairs) else ""
    which = measured_image_note(session, reply)
    return text, " ".join(part for part in (note, change, which) if part)


def _presence(
    session: ChatSession, q: PresenceQuestion, reply: ChatReply, classes: tuple[str, ...]
) -> str | None:
    """Make a presence answer's mask the asked class's own (the answer's `[SEG]` of the class's
    name when it drew that alone, else the class question's), so that its yes/no is that mask's
    verdict; for a class the decoder does not outline, the plain sentence to answer with (its
    masks, of some other phrase, dropped): the scene head's verdict on "mainly X?" where the model
    has one (`skyeye.chat.scene_choice.scene_verdict`), else a sentence that it cannot tell."""
    if q.phrase is None:
        _take_masks(reply, reply, [])
        verdict = None
        if q.mainly:
            tensors = session._image_tensors(session.images[0])
            verdict = scene_verdict(session.model, session.processor.tokenizer, tensors, q.words)
        return verdict or cannot_tell(q, classes)
    if _class_mask(reply, q.phrase) is not None and len(reply.masks) == 1:
        return None  # the model's own answer (the validation's presence rows)
    if _keep_class_mask(session, reply, q.phrase, answers_own=True):
        # The verdict word is the mask's (`state_measured` restates it when the mask disagrees).
        reply.text = f"{seg_opening([q.phrase])} Yes."
    return None


def measured_image_note(session: ChatSession, reply: ChatReply) -> str:
    """'On image 2 of 2 (2020-06-01).' when the question is about several images and
    the answer's masks (change masks aside) all lie on one of them, else ''. The model draws a
    mask on the last image by default: a figure about "these images" is about that one."""
    if len(session.images) < 2:
        return ""
    group, _ = question_images(session)
    on = {k for k, pair in zip(reply.mask_images, reply.mask_pairs, strict=False) if pair is None}
    if len(group) < 2 or len(on) != 1 or not on <= set(group):
        return ""
    return image_words(session, group, on.pop())


def _describe(session: ChatSession, reply: ChatReply, inputs: Any, classes: tuple[str, ...]) -> str:
    named = classes_named(reply.text, classes)
    first = len(reply.masks)
    _add_masks(session, reply, inputs, named)
    areas = {
        phrase: reply.mask_areas[first + k]
        for k, phrase in enumerate(reply.mask_phrases[first:])
        if phrase is not None
    }
    return state_description(reply.text, areas, classes)
