"""'Which of these covers the largest part of this image? A. vegetation B. water C. cloud'
answered by measuring each option's mask.

When every option names a class the mask decoder outlines (`skyeye.chat.counting.mask_class`:
'lakes' -> water, 'farmland' -> cultivated land) and the question asks which covers the most,
the answer is measured, not chosen by the LLM: each option's mask is drawn with its own class
question (`skyeye.chat.class_question.class_reply`, "Segment all water.", on the conversation's
one image) and the option whose mask covers the largest share of the valid pixels is the answer.
One question per class, not one for all: on the recipe's 96 held-out multiple-choice tiles the
masks of one answer with several `[SEG]`s picked the right option 33 % of the time, one class at
a time 56 % (option likelihood 54 %, the blind model 46 %; docs/evaluation.md). Scene names
('pasture', 'harbour') and other questions are left to the scene head and the likelihood scorer
(`skyeye.chat.choices`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from skyeye.chat.class_question import class_reply
from skyeye.chat.counting import decoder_classes, mask_class
from skyeye.errors import OptionsError
from skyeye.grounding.options import MultipleChoice, format_choice, parse_options

if TYPE_CHECKING:
    from skyeye.chat.session import ChatSession

__all__ = ["asks_largest_cover", "cover_answer", "cover_classes"]

#: Stems asking which class covers the most of the image.
_COVER_STEM = re.compile(
    r"\b(cover(?:s|ed)?\s+(?:the\s+)?(?:most|largest|biggest|greatest)|"
    r"(?:largest|biggest|greatest)\s+(?:part|share|area|portion|fraction)|most\s+ground|"
    r"main\s+(?:land[ -]?cover|class|surface)|dominant|dominates?|predominant|mainly|mostly)\b",
    re.IGNORECASE,
)


def asks_largest_cover(stem: str) -> bool:
    """True when ``stem`` asks which option covers the most of the image."""
    return bool(_COVER_STEM.search(stem))


def cover_classes(choice: MultipleChoice, classes: tuple[str, ...]) -> list[str] | None:
    """The decoder class each option names, in order, or None when an option names none of
    ``classes`` or two options name the same class (their masks could not tell them apart)."""
    named = [mask_class(o.text.rstrip(".").strip(), classes) for o in choice.options]
    if any(n is None for n in named) or len(set(named)) != len(named):
        return None
    return [str(n) for n in named]


def cover_answer(session: ChatSession, question: str) -> str | None:
    """'B. water' when ``question`` asks which of its options covers the most of the
    conversation's one image and every option is a decoder class; None otherwise (no mask head,
    not one image, not such a question, an option the decoder does not outline)."""
    if session.model.mask_head is None or len(session.images) != 1:
        return None
    try:
        choice = parse_options(question)
    except OptionsError:
        return None  # the likelihood scorer says what is wrong with the options
    if choice is None or not asks_largest_cover(choice.stem):
        return None
    names = cover_classes(
        choice, decoder_classes(session.settings.mask_classes, session.model.config)
    )
    if names is None:
        return None
    shares = []
    for name in names:
        reply = class_reply(session, [name])
        shares.append(reply.mask_areas[0].share if reply.mask_areas else 0.0)
    best = max(range(len(names)), key=lambda i: (shares[i], -i))
    return format_choice(choice.options[best])
