"""A question that names one of several images ("Is there water in the first image?", "How much
water is there in image 1?", "... in the 2009 image?") is answered on that image alone.

The model draws a mask on the last image of a turn by default, so before this a question about
the first of two dates was answered on the second ("On image 2 of 2 (2020-08-31) — water covers
953 ha"). `named_image_reply` asks the question of a session holding only the named image (the
same model, processor and settings; the conversation's earlier turns are not seen), so every
measured answer (presence, areas, counts, boxes) applies to it, and says which image it was.
The last image, a change question (it compares the dates) and a question naming several images
are left to the usual path.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from skyeye.chat.change_seg import question_images
from skyeye.io.dates import date_label

if TYPE_CHECKING:
    from skyeye.chat.reply import ChatReply
    from skyeye.chat.session import ChatSession

__all__ = ["image_words", "named_image", "named_image_reply"]

_NOUN = r"(?:image|date|scene|picture|photo|one)"
_ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2}
_RELATIVE = ("last", "latest", "earlier", "later", "before", "after")
_ORDINAL = re.compile(rf"\b({'|'.join([*_ORDINALS, *_RELATIVE])})\s+{_NOUN}\b")
#: Ordinals with or without a noun: two different ones ("the first image or the second") name
#: several images.
_ANY_ORDINAL = re.compile(rf"\b({'|'.join(_ORDINALS)})\b")
_NUMBERED = re.compile(r"\b(?:image|date|picture|photo)\s+(\d)\b")
#: Words of a question about several images at once ("more water in the first than the second").
_SEVERAL = re.compile(
    r"\b(than|compare[ds]?|both|each|between|versus|vs|more|less|fewer|larger|smaller|bigger|"
    r"wider|narrower|higher|lower|grew|shrank|increased|decreased)\b"
)
_YEAR = re.compile(rf"\b(?:(\d{{4}})\s+{_NOUN}|{_NOUN}\s+(?:from|of)\s+(\d{{4}})|in\s+(\d{{4}}))\b")


def named_image(prompt: str, dates: Sequence[str | None]) -> int | None:
    """The position (0-based) of the one image ``prompt`` names among images with ``dates``
    (ISO or None, in order): "first image", "image 2", "the later one", "the 2009 image", "in
    2009" (a year only one image has). None when it names none, several, or one out of range,
    or asks about several at once ("than", "both", "compare", "larger", two ordinals, ...)."""
    n = len(dates)
    named: set[int] = set()
    text = prompt.lower()
    if _SEVERAL.search(text) or len({_ORDINALS[w] for w in _ANY_ORDINAL.findall(text)}) > 1:
        return None
    for word in _ORDINAL.findall(text):
        if word in _ORDINALS:
            named.add(_ORDINALS[word])
        elif word in ("last", "latest", "later", "after"):
            named.add(n - 1)
        elif n == 2:  # "earlier", "before": of two
            named.add(0)
    named.update(int(d) - 1 for d in _NUMBERED.findall(text))
    labels = [date_label(d) for d in dates]
    years = [label[:4] if label else None for label in labels]
    for groups in _YEAR.findall(text):
        year = next(g for g in groups if g)
        hits = [k for k, y in enumerate(years) if y == year]
        if len(hits) == 1:
            named.add(hits[0])
    if len(named) != 1:
        return None
    k = named.pop()
    return k if 0 <= k < n else None


def image_words(session: ChatSession, group: Sequence[int], index: int) -> str:
    """'On image 1 of 2 (2009-08-18).': which of the question's images ``index`` is."""
    date = date_label(session.images[index].datetime)
    return f"On image {list(group).index(index) + 1} of {len(group)}{f' ({date})' if date else ''}."


def named_image_reply(
    session: ChatSession, prompt: str, cancel: threading.Event | None = None
) -> ChatReply | None:
    """The answer to ``prompt`` on the one image of the question's images it names, when that is
    not the last (see the module docstring); None otherwise. Its masks lie on that image
    (``mask_images``) and its text ends with `image_words`. ``cancel`` stops it as it stops the
    session's own answers. It runs on the plain generator, not the session's (the server's
    batcher keys its prefix cache on the turn's images, not this one image's)."""
    from skyeye.chat.change_answer import read_change_question

    group, _ = question_images(session)
    if len(group) < 2 or read_change_question(prompt) is not None:
        return None
    k = named_image(prompt, [session.images[i].datetime for i in group])
    if k is None or k == len(group) - 1:
        return None
    index = group[k]
    alone = type(session)(session.model, session.processor, session.settings)
    alone.add_images([session.images[index]])
    reply = alone.ask(prompt, cancel)
    reply.mask_images = [index for _ in reply.mask_images]
    reply.text = f"{reply.text} {image_words(session, group, index)}"
    return reply
