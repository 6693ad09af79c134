"""Training the change decoder on cached states, resumable, and scoring it on cached pairs.

The loop draws batches of cached change `[SEG]`s (Python's global generator, seeded), applies
the same random flip / 90° rotation to both dates' patch grids, pixels and the mask, and trains
`model.change_head` alone with the mask losses (BCE 2.0, dice 0.5). Every ``save_every`` steps
a checkpoint (`finetune.state.CheckpointManager`: the head's weights, optimizer, scheduler, RNG
states, the log) is written; a run started again resumes from the newest intact one and ends
with the same weights, bit for bit, as a run never stopped.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from finetune.schedule import make_scheduler
from finetune.state import CheckpointManager, trainable_state
from skyeye.errors import CheckpointError

logger = logging.getLogger(__name__)

__all__ = ["ChangeTrainConfig", "predict_cached", "score_cached", "train_change_head"]


@dataclass
class ChangeTrainConfig:
    """steps / batch_size / lr / seed of the loop; bce_weight, dice_weight: the mask losses'
    weights; save_every: steps between checkpoints (0: none)."""

    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    bce_weight: float = 2.0
    dice_weight: float = 0.5
    save_every: int = 0


def _after_step(step: int) -> None:
    """Called after each step's update (and checkpoint): tests stop a run here, as a kill would."""


def _augment(
    views: list[torch.Tensor], grids: list[torch.Tensor], side: int, rng: random.Random
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The same random rot90 / flip of (side*side, D) patch grids and (..., H, W) images."""
    k, flip = rng.randrange(4), rng.random() < 0.5
    out_grids = []
    for g in grids:
        n, d = g.shape
        x = torch.rot90(g.reshape(side, side, d), k, (0, 1))
        out_grids.append((x.flip(1) if flip else x).reshape(n, d))
    out_views = []
    for v in views:
        x = torch.rot90(v, k, (-2, -1))
        out_views.append(x.flip(-1) if flip else x)
    return out_grids, out_views


def _losses(head: Any, cache: dict[str, Any], idx: list[int], side: int, rng: random.Random):
    from skyeye.modeling.mask_decoders import mask_losses

    items = []
    for i in idx:
        (vb, va), (pb, pa, mask) = _augment(
            [cache["pixels_before"][i], cache["pixels_after"][i], cache["masks"][i]],
            [cache["vision_before"][i], cache["vision_after"][i]],
            side,
            rng,
        )
        items.append((i, vb, va, pb, pa, mask))
    groups: dict[tuple[int, ...], list[int]] = {}
    for j, item in enumerate(items):
        groups.setdefault(tuple(item[5].shape), []).append(j)
    terms: dict[str, Any] = {"bce": 0.0, "dice": 0.0}
    for size, members in groups.items():
        logits = head(
            cache["hidden"][[items[j][0] for j in members]],
            torch.stack([items[j][1] for j in members]),
            torch.stack([items[j][2] for j in members]),
            (side, side),
            size,
            [items[j][3] for j in members],
            [items[j][4] for j in members],
            [cache["waves_before"][items[j][0]] for j in members],
            [cache["waves_after"][items[j][0]] for j in members],
        )
        part = mask_losses(logits, torch.stack([items[j][5] for j in members]))
        for key in terms:
            terms[key] = terms[key] + part[key] * len(members) / len(idx)
    return terms


def train_change_head(
    model: Any,
    cache: dict[str, Any],
    cfg: ChangeTrainConfig,
    checkpoints: CheckpointManager | None = None,
    run_key: str = "",
) -> list[dict[str, float]]:
    """Train ``model.change_head`` in place on ``cache`` (`finetune.change_cache`); returns the
    log. With ``checkpoints``, resumes from the newest intact checkpoint there and saves every
    ``cfg.save_every`` steps. A checkpoint is reused only when it was written by the same run
    (``run_key``, e.g. the cache's fingerprint, and every field of ``cfg``); another run's
    raises `CheckpointError`."""
    run = {"key": run_key, **{k: str(v) for k, v in asdict(cfg).items() if k != "save_every"}}
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model.requires_grad_(False)
    head = model.change_head.float().train().requires_grad_(True)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = make_scheduler(opt, "cosine", max(1, cfg.steps // 20), cfg.steps)
    side = model.config.vision_config.grid_size
    n = int(cache["hidden"].shape[0])
    log: list[dict[str, float]] = []
    start = 0
    if checkpoints is not None:
        found = checkpoints.load_newest_valid(model, opt, sched, rank=0)
        if found is not None:
            folder, state = found
            if state.get("run") != run:
                raise CheckpointError(
                    f"{folder} was written by another change run (settings or records differ: "
                    f"{state.get('run')} vs {run}); use a new --out folder or delete "
                    f"{checkpoints.root}"
                )
            start, log = int(state["step"]), list(state["log"])
            logger.info("resumed the change stage from %s (step %d)", folder, start)
    began = time.time()
    for step in tqdm(range(start, cfg.steps), desc="change decoder", unit="step", initial=start):
        idx = [random.randrange(n) for _ in range(cfg.batch_size)]
        terms = _losses(head, cache, idx, side, random.Random(random.getrandbits(64)))
        loss = cfg.bce_weight * terms["bce"] + cfg.dice_weight * terms["dice"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == cfg.steps - 1:
            entry = {"step": step, "bce": float(terms["bce"]), "dice": float(terms["dice"])}
            log.append({**entry, "seconds": round(time.time() - began, 1)})
            logger.info("change step %d: %s", step, log[-1])
        done = step + 1
        if checkpoints is not None and cfg.save_every and done % cfg.save_every == 0:
            if done < cfg.steps:
                tmp = checkpoints.begin(done)
                checkpoints.write_rank(tmp, 0)
                state = {"step": done, "log": log, "run": run}
                checkpoints.write_main(tmp, trainable_state(model), opt, sched, state)
                checkpoints.commit(done)
        _after_step(done)
    head.eval().requires_grad_(False)
    return log


@torch.no_grad()
def predict_cached(model: Any, cache: dict[str, Any]) -> list[np.ndarray]:
    """The change decoder's masks ((H, W) bool, on each target's grid) for every cached pair."""
    head = model.change_head.eval()
    side = model.config.vision_config.grid_size
    out = []
    for i in range(int(cache["hidden"].shape[0])):
        logits = head(
            cache["hidden"][i : i + 1],
            cache["vision_before"][i : i + 1],
            cache["vision_after"][i : i + 1],
            (side, side),
            tuple(cache["masks"][i].shape),
            [cache["pixels_before"][i]],
            [cache["pixels_after"][i]],
            [cache["waves_before"][i]],
            [cache["waves_after"][i]],
        )
        out.append((logits[0] > 0).cpu().numpy())
    return out


def score_cached(model: Any, cache: dict[str, Any]) -> dict[str, Any]:
    """gIoU / cIoU / F1 of the change decoder on cached pairs by the baselines' rule
    (`change_scores`); the records' targets are already cut to both dates' valid pixels."""
    from skyeye.evaluation.change_baselines import change_scores

    preds = predict_cached(model, cache)
    targets = [m.bool().numpy() for m in cache["masks"]]
    return change_scores(preds, targets)
