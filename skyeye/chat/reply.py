"""`ChatReply`: one answer with the boxes and masks it points at, each mask measured."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from skyeye.grounding.geo import MaskArea, mask_area
from skyeye.grounding.parse import GroundedBox
from skyeye.io.image import RasterImage


@dataclass
class ChatReply:
    """One assistant answer with what it points at.

    text: the answer. boxes: boxes parsed from it (normalised to the image). masks: one (H, W)
    bool array per `[SEG]` on the grid of the image it refers to. mask_phrases: the phrase of
    each mask (or None). mask_images: for each mask, the index in `ChatSession.images` of the
    image it lies on. mask_areas: per mask, the measured share of the image's valid pixels and,
    on a georeferenced image, its ground area (`skyeye.grounding.geo.mask_area`); with one mask,
    any share or area the text states is that measured figure. prompt_tokens / completion_tokens:
    tokens read (image tokens included) and written for this answer. finish_reason: "length" when
    the answer ran into `max_new_tokens`, else "stop" (an end token or a stop string).
    mask_pairs: per mask, the (before, after) images of a change mask (`skyeye.chat.change_seg`;
    it lies on the after image), else None. transitions: the measured class transitions of a
    change answer (`skyeye.chat.transitions`), else None. change: what a change answer measured
    (`skyeye.chat.change_answer.ChangeMeasure`), else None.
    """

    text: str
    boxes: list[GroundedBox] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    mask_phrases: list[str | None] = field(default_factory=list)
    mask_images: list[int] = field(default_factory=list)
    mask_areas: list[MaskArea] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    mask_pairs: list[tuple[int, int] | None] = field(default_factory=list)
    transitions: Any = None
    change: Any = None


def add_masks(
    reply: ChatReply,
    images: Sequence[RasterImage],
    logits: torch.Tensor,
    image_index: torch.Tensor,
    phrases: Sequence[str | None],
    entries: Sequence[Any] | None = None,
) -> None:
    """Append the masks of ``logits`` (K, h, w) to ``reply``: each resized to the grid of the
    image it lies on (``image_index`` (K,)), thresholded, measured (share of the valid pixels,
    ground area when georeferenced) and named by its phrase; ``entries``: per mask, a (before,
    after) pair for a change mask (`skyeye.chat.change_seg`)."""
    for k in range(logits.shape[0]):
        entry = entries[k] if entries is not None else None
        reply.mask_pairs.append(entry if isinstance(entry, tuple) else None)
        reply.mask_images.append(int(image_index[k]))
        image = images[reply.mask_images[-1]]
        grid = image.data.shape[1:]
        mask = F.interpolate(logits[k][None, None].float(), size=grid, mode="bilinear")[0, 0]
        reply.masks.append((mask > 0).cpu().numpy())
        georeferenced = image.crs is not None and image.transform is not None
        reply.mask_areas.append(
            mask_area(
                reply.masks[-1],
                transform=image.transform if georeferenced else None,
                crs=image.crs if georeferenced else None,
                valid=image.valid_mask,
            )
        )
        reply.mask_phrases.append(phrases[k] if k < len(phrases) else None)
