"""Which `[SEG]` of an answer is a change `[SEG]`: the one rule for the chat and change training.

A `[SEG]` is decoded as a change mask (by the model's change decoder, `change_head`) when

1. the model has a change decoder (``config.mask_change``),
2. the question's images (the latest user turn that carried images) are two or more images on
   one grid (dated images of one place are put there by `skyeye.chat.multi_date`), and
3. its phrase names a change (`is_change_phrase`): "changed land cover", "new water",
   "lost forest", "water gained", "buildings appeared", ... — the phrases the change records'
   answers open with (`instruct_data.change`, LEVIR-MCI's "changed buildings").

Its `seg_image_index` entry is then the pair (first, last) of those images; every other `[SEG]`
keeps the model's default (the last image before it). "Show the water in the second image"
asked of two dates is a plain mask on one date; "show where water appeared" is a change mask.
`finetune.change_stage` applies `is_change_phrase` to the records' phrases, so the decoder is
trained on exactly the `[SEG]`s the chat sends it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from skyeye.grounding.parse import parse_seg_phrases

if TYPE_CHECKING:
    from skyeye.chat.session import ChatSession

__all__ = [
    "CHANGE_WORDS",
    "change_entries",
    "change_seg_index",
    "is_change_phrase",
    "latest_image_group",
    "question_images",
]

#: Words that make a `<p>phrase</p>` a change phrase (whole words, any case).
CHANGE_WORDS = (
    "change", "changed", "changes", "new", "lost", "loss", "gained", "gain", "appeared",
    "disappeared", "added", "removed", "built", "cleared", "demolished", "gone", "grown",
    "expanded", "shrunk", "flooded", "burned", "deforested", "difference", "differences",
)  # fmt: skip
_CHANGE_RE = re.compile(r"\b(" + "|".join(CHANGE_WORDS) + r")\b", re.IGNORECASE)


def is_change_phrase(phrase: str | None) -> bool:
    """True when ``phrase`` names a change ("changed land cover", "new water", "water lost")."""
    return bool(phrase) and _CHANGE_RE.search(phrase or "") is not None


def latest_image_group(messages: Sequence[dict[str, Any]], n_images: int) -> list[int]:
    """Indices (into the conversation's images) of the images of the latest user turn that
    carried any: the images a question about "these images" refers to ([] when none)."""
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        count = sum(1 for part in content if part.get("type") == "image")
        if count:
            return list(range(n_images - count, n_images))
    return []


def change_seg_index(
    text: str, group: Sequence[int], grids: Sequence[tuple[int, ...]], has_change_decoder: bool
) -> list[int | tuple[int, int]] | None:
    """`seg_image_index` for the answer ``text``'s `[SEG]`s, or None when none is a change `[SEG]`
    (the model's default rule then applies to all).

    group: the question's images (`latest_image_group`); grids: their (H, W) grids, in order.
    """
    if not has_change_decoder or len(group) < 2 or len(set(grids)) != 1:
        return None
    phrases = parse_seg_phrases(text)
    if not any(is_change_phrase(p) for p in phrases):
        return None
    pair = (int(group[0]), int(group[-1]))
    return [pair if is_change_phrase(p) else int(group[-1]) for p in phrases]


def question_images(session: ChatSession) -> tuple[list[int], list[tuple[int, ...]]]:
    """The question's images in ``session`` (`latest_image_group`) and their (H, W) grids."""
    group = latest_image_group(session.messages, len(session.images))
    return group, [tuple(session.images[i].data.shape[1:]) for i in group]


def change_entries(
    session: ChatSession, text: str, new_ids: torch.Tensor
) -> list[int | tuple[int, int]] | None:
    """`change_seg_index` for an answer of ``session`` (its ``text`` and generated ids (1, T)),
    or None when no `[SEG]` of it is a change `[SEG]` (or the text's `[SEG]`s are not the ids')."""
    model = session.model
    group, grids = question_images(session)
    entries = change_seg_index(text, group, grids, getattr(model, "change_head", None) is not None)
    if entries is None:
        return None
    n_seg = int((new_ids == model.config.seg_token_id).sum())
    return entries if len(entries) == n_seg else None
