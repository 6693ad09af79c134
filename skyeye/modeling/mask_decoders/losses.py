"""The mask losses every decoder is trained with: per-mask sigmoid BCE and dice."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["mask_losses"]


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
