"""The learning-rate schedule of every training stage: linear warm-up, then cosine / linear decay
to 0 or constant (transformers' schedules, so the formula is the one the ecosystem uses)."""

from __future__ import annotations

import torch
from transformers import get_scheduler

from finetune.args import SCHEDULERS


def make_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` for `optimizer`: factor step / warmup_steps during warm-up (0 at step 0), then
    cosine or linear decay reaching 0 at `total_steps`, or 1 for "constant"."""
    if kind not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {kind!r}")
    name = "constant_with_warmup" if kind == "constant" else kind
    scheduler: torch.optim.lr_scheduler.LambdaLR = get_scheduler(
        name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps
    )
    return scheduler
