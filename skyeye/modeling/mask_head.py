"""The ``[SEG]`` mask head: the hidden state of each ``[SEG]`` token -> a mask over the image.

The decoders: "light" (`skyeye.modeling.light_mask_head.SkyEyeMaskHead`, LISA / SAM-style
light decoder on the tower's patch grid) and "hires"
(`skyeye.modeling.hires_mask_head.HiResMaskHead`, the light mask refined on the image's pixels).
This module holds their registry, the protocol, the mask losses and the ``[SEG]`` positions.

Any decoder with the :class:`MaskDecoder` forward signature can be registered in
``MASK_DECODERS`` (e.g. a SAM-style decoder from transformers when its weights exist). A decoder
with ``needs_pixels = True`` (``"hires"``, `skyeye.modeling.hires_mask_head`) also takes each
mask's full-resolution ``pixels`` and ``wavelengths`` and returns masks on their grid.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

import torch.nn.functional as F
from torch import Tensor, nn

from skyeye.modeling.hires_mask_head import HiResMaskHead
from skyeye.modeling.light_mask_head import SkyEyeMaskHead

logger = logging.getLogger(__name__)

__all__ = [
    "MASK_DECODERS",
    "HiResMaskHead",
    "MaskDecoder",
    "SkyEyeMaskHead",
    "get_mask_decoder",
    "list_mask_decoders",
    "mask_losses",
    "seg_token_positions",
]


@runtime_checkable
class MaskDecoder(Protocol):
    """What the model needs from a mask decoder (an ``nn.Module`` built from the SkyEyeConfig).

    ``forward(seg_hidden (K, D_text), vision_features (K, N, D_vis), grid (h, w) with
    h * w == N, output_size (H, W)) -> (K, H, W)`` mask logits, one mask per ``[SEG]``.
    """

    def __call__(
        self,
        seg_hidden: Tensor,
        vision_features: Tensor,
        grid: tuple[int, int],
        output_size: tuple[int, int],
    ) -> Tensor: ...


MASK_DECODERS: dict[str, type[nn.Module]] = {"light": SkyEyeMaskHead, "hires": HiResMaskHead}


def get_mask_decoder(name: str) -> type[nn.Module]:
    """The mask decoder class registered as ``name`` (build it with ``cls(config)``)."""
    try:
        return MASK_DECODERS[name]
    except KeyError:
        raise KeyError(
            f"unknown mask decoder {name!r}; available: {list_mask_decoders()}"
        ) from None


def list_mask_decoders() -> list[str]:
    return sorted(MASK_DECODERS)


def mask_losses(logits: Tensor, targets: Tensor, *, dice_smooth: float = 1e-3) -> dict[str, Tensor]:
    """Per-mask-averaged sigmoid BCE and dice loss; logits and targets (K, H, W).

    BCE: mean over pixels of each mask, then mean over masks (LISA's sigmoid_ce_loss).
    Dice: ``1 - (2 Σ p t + s) / (Σ p + Σ t + s)`` per mask with sigmoid p and smoothing s,
    averaged over masks. The default s = 1e-3 is LISA's dice (inputs and targets / 1000, eps 1e-6)
    written without the scale; an empty target predicted empty costs ~0. Weights (DESIGN: BCE 2.0,
    dice 0.5) are applied by the caller. With K == 0 both losses are 0 (and keep the graph).
    """
    if logits.shape != targets.shape or logits.ndim != 3:
        raise ValueError(
            f"logits and targets must both be (K, H, W); got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if logits.shape[0] == 0:
        zero = logits.sum() * 0.0
        return {"bce": zero, "dice": zero}
    targets = targets.to(logits.dtype)
    bce = (
        F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        .flatten(1)
        .mean(1)
        .mean()
    )
    p = logits.sigmoid().flatten(1)
    t = targets.flatten(1)
    dice = 1.0 - (2.0 * (p * t).sum(1) + dice_smooth) / (p.sum(1) + t.sum(1) + dice_smooth)
    return {"bce": bce, "dice": dice.mean()}


def seg_token_positions(input_ids: Tensor, seg_token_id: int) -> list[tuple[int, int]]:
    """(batch index, position) of every ``[SEG]`` in ``input_ids`` (B, L), in reading order.

    In a causal LM the last hidden state at that position is the state after reading ``[SEG]``,
    which is what the mask head decodes (LISA).
    """
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (B, L), got {tuple(input_ids.shape)}")
    idx = (input_ids == seg_token_id).nonzero(as_tuple=False)
    return [(int(b), int(p)) for b, p in idx.tolist()]
