"""Presence questions read: "Is there water?", "Is this image mainly forest?", of which class.

A yes/no about a class is the verdict of that class's mask (`skyeye.chat.measured`). Asked
"Is this image mainly freeway?", skyeye-tiny drew ``<p>water</p> [SEG]`` and the chat said
"No, it is not mainly water.", a verdict on a class nobody asked about; asked about "mobile home
park" it drew a mask of the word "mallhouse". The question is read here (the words asked and the
decoder class they name, as counting questions are, `skyeye.chat.counting.named_class`) so that
the verdict is measured on the asked class's own mask, or, for a class the decoder does not
outline, a plain sentence says so rather than guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skyeye.chat.counting import DEFAULT_MASK_CLASSES, named_class
from skyeye.chat.measured import asks_mainly

__all__ = ["PresenceQuestion", "cannot_tell", "read_presence_question"]

_END = r"(?=\s+(?:in|on|within|across|at|visible|present|anywhere)\b|\s*[?.,!]|\s*$)"
_WHAT = r"(?P<what>[a-z][a-z\s-]*?)"
_ARTICLE = r"(?P<article>any\s+|an?\s+|some\s+)?"
_IMAGE = r"(?:this|the)\s+(?:\w+[\s-])*?(?:image|scene|tile|picture|photo|patch|chip)"
#: One pattern per way of asking (each names the asked words ``what``).
_ASKS = tuple(
    re.compile(r"^\s*" + pattern, re.IGNORECASE)
    for pattern in (
        rf"(?:is|are)\s+there\s+{_ARTICLE}{_WHAT}{_END}",
        rf"(?:does|do)\s+{_IMAGE}\s+(?:contain|show|have|include)\s+{_ARTICLE}{_WHAT}{_END}",
        rf"can\s+you\s+see\s+{_ARTICLE}{_WHAT}{_END}",
        rf"is\s+{_ARTICLE}{_WHAT}\s+(?:present|visible)\b",
        rf"is\s+{_IMAGE}\s+(?:mainly|mostly|predominantly|largely|primarily|chiefly)\s+{_WHAT}{_END}",
    )
)
#: "Is there more water in the second image?" compares; "Is there any change?" asks about dates.
_NOT_A_CLASS = re.compile(r"^(?:more|less|fewer|much|many|change|changes|difference)\b", re.I)


@dataclass(frozen=True)
class PresenceQuestion:
    """A yes/no about one class: ``words`` as asked ("water bodies"), ``phrase`` the decoder
    class they name (None: not one it outlines), ``mainly`` whether it asks for most of the
    image rather than any of it, ``article`` the one asked with ("a ", "any ", or "")."""

    words: str
    phrase: str | None
    mainly: bool
    article: str = ""


def read_presence_question(
    question: str, classes: tuple[str, ...] = DEFAULT_MASK_CLASSES
) -> PresenceQuestion | None:
    """The presence question ``question`` asks, or None when it asks none (or compares)."""
    found = next((m for m in (p.search(question) for p in _ASKS) if m is not None), None)
    if found is None:
        return None
    words = " ".join(found.group("what").split())
    if not words or _NOT_A_CLASS.match(words):
        return None
    article = (found.groupdict().get("article") or "").lower()
    return PresenceQuestion(words, named_class(words, classes), asks_mainly(question), article)


def cannot_tell(q: PresenceQuestion, classes: tuple[str, ...]) -> str:
    """The plain sentence for a class the decoder does not outline (no yes/no is guessed)."""
    what = (
        f"this image is mainly {q.words}" if q.mainly else f"this image shows {q.article}{q.words}"
    )
    return (
        f"I cannot tell whether {what}: this model's mask decoder was not trained to outline "
        f"{q.words} (it outlines {', '.join(classes[:6])}, ...), and I will not guess."
    )
