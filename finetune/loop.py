"""The training loop: accelerate for devices and processes, our own loop for everything else.

Why not transformers' Trainer: the model is a plain nn.Module whose batches hold lists of images
with different band counts and per-[SEG] masks, checkpoints must be exact-resume deltas in the
SkyEye folder format, and the data position must survive SIGKILL to the step. Each of these means
overriding most of Trainer; a 300-line loop on `accelerate` keeps `accelerate launch` (DDP,
DeepSpeed, FSDP, mixed precision) and stays readable.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from finetune.args import Recipe
from finetune.data_setup import StepSampler
from finetune.run_log import RunLog
from finetune.state import CheckpointManager, trainable_state
from skyeye.data.dataset import InstructionDataset, SkyEyeCollator
from skyeye.errors import DiskFullError

logger = logging.getLogger(__name__)

MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "labels",
    "pixel_values",
    "wavelengths",
    "masks",
    "seg_image_index",
    "pixel_values_hires",
)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    out = {}
    for key in MODEL_INPUTS:
        value = batch.get(key)
        if isinstance(value, torch.Tensor):
            value = value.to(device)
        elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
            value = [v.to(device) for v in value]
        out[key] = value
    return out


class Loop:
    """Runs the optimisation of a prepared model (see `finetune.train.main`)."""

    def __init__(
        self,
        recipe: Recipe,
        accelerator: Any,
        model: torch.nn.Module,
        optimizer: Any,
        scheduler: Any,
        train_ds: InstructionDataset,
        eval_ds: InstructionDataset | None,
        collator: SkyEyeCollator,
        log: RunLog | None,
    ) -> None:
        self.recipe, self.acc, self.model = recipe, accelerator, model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_ds, self.eval_ds, self.collator, self.log = train_ds, eval_ds, collator, log
        t = recipe.train
        self.ckpt = CheckpointManager(Path(t.output_dir) / "checkpoints", keep=t.keep_checkpoints)
        self.global_batch = t.batch_size * accelerator.num_processes * t.grad_accum
        self.step = 0
        self.skipped = 0
        self.loss_kwargs = {
            "ce_weight": t.ce_weight,
            "bce_weight": t.bce_weight,
            "dice_weight": t.dice_weight,
        }

    # ------------------------------------------------------------ checkpoints
    def _trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "records_seen": self.step * self.global_batch,
            "global_batch": self.global_batch,
            "train_records": len(self.train_ds),
            "seed": self.recipe.train.seed,
            "skipped_records": self.skipped,
            "world_size": self.acc.num_processes,
        }

    def save_checkpoint(self) -> None:
        from accelerate.utils import DistributedType

        acc, step = self.acc, self.step
        if acc.is_main_process:
            self.ckpt.begin(step)
        acc.wait_for_everyone()
        tmp = self.ckpt.tmp_dir(step)
        sharded = acc.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
        if sharded:
            # Optimizer state is sharded across processes: let accelerate gather/write it.
            acc.save_state(str(tmp / "accelerate"))
        try:
            self.ckpt.write_rank(tmp, acc.process_index)
            if acc.is_main_process:
                weights = trainable_state(acc.unwrap_model(self.model))
                self.ckpt.write_main(
                    tmp, weights, self.optimizer, self.scheduler, self._trainer_state()
                )
            acc.wait_for_everyone()
            if acc.is_main_process:
                path = self.ckpt.commit(step)
                logger.info("checkpoint %s", path)
        except DiskFullError:
            if acc.is_main_process:
                self.ckpt.abort(step)  # the temporary folder only; older checkpoints stay
            raise
        acc.wait_for_everyone()

    def resume(self) -> None:
        from accelerate.utils import DistributedType

        found = self.ckpt.load_newest_valid(
            self.acc.unwrap_model(self.model),
            self.optimizer,
            self.scheduler,
            self.acc.process_index,
        )
        if found is None:
            logger.warning(
                "--resume: no intact checkpoint in %s; starting from step 0", self.ckpt.root
            )
            return
        folder, state = found
        if (folder / "accelerate").is_dir() and self.acc.distributed_type in (
            DistributedType.DEEPSPEED,
            DistributedType.FSDP,
        ):
            self.acc.load_state(str(folder / "accelerate"))
        for key in ("global_batch", "train_records", "seed"):
            if state[key] != self._trainer_state()[key]:
                raise ValueError(
                    f"{folder}: {key} was {state[key]}, now {self._trainer_state()[key]}; the data "
                    "position only carries over with the same data, seed and global batch "
                    "(batch_size x processes x grad_accum). Use those, or a new output_dir"
                )
        self.step, self.skipped = int(state["step"]), int(state["skipped_records"])
        logger.info("resumed from %s at step %d", folder, self.step)

    # ------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss over the held-out split (every process takes a shard; equal batch counts)."""
        if self.eval_ds is None:
            return {}
        acc, bs = self.acc, self.recipe.train.batch_size
        mine = list(range(acc.process_index, len(self.eval_ds), acc.num_processes))
        per_rank = math.ceil(len(self.eval_ds) / acc.num_processes)
        self.model.eval()
        sums = torch.zeros(3, device=acc.device)  # weighted loss, examples, ce
        stand_in: dict[str, Any] | None = None  # a good batch, forwarded with weight 0
        for b in range(math.ceil(per_rank / bs)):
            chunk = mine[b * bs : (b + 1) * bs]
            batch = self.collator([self.eval_ds[i] for i in (chunk or [0])])
            weight = len(batch["ids"]) if chunk else 0
            if "input_ids" in batch:
                stand_in = batch
            else:
                # Every record of this batch failed to load. Forward a good batch anyway, with
                # weight 0: under ZeRO-3 / FSDP every forward gathers parameters with the other
                # processes, which would wait forever for a skipped one (as training does with
                # its zero loss).
                stand_in = stand_in or self._eval_stand_in()
                if stand_in is None:
                    continue
                batch = stand_in
            out = self.model(**to_device(batch, acc.device), **self.loss_kwargs)
            sums += torch.stack(
                [
                    out.loss.float() * weight,
                    torch.tensor(float(weight), device=acc.device),
                    out.loss_terms["ce"].float() * weight,
                ]
            )
        self.model.train()
        sums = acc.reduce(sums, reduction="sum")
        n = max(float(sums[1]), 1.0)
        return {
            "eval_loss": float(sums[0]) / n,
            "eval_ce": float(sums[2]) / n,
            "eval_examples": int(sums[1]),
        }

    def _eval_stand_in(self) -> dict[str, Any] | None:
        """The first held-out record that loads, as a batch (None when none does)."""
        assert self.eval_ds is not None
        for index in range(len(self.eval_ds)):
            example = self.eval_ds[index]
            if example is not None:
                return self.collator([example])
        logger.warning("no held-out record loads: evaluation cannot run a forward")
        return None

    # ------------------------------------------------------------ training
    def _zero_loss(self) -> torch.Tensor:
        # A micro-batch whose records all failed still joins the gradient all-reduce.
        return sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad)

    def run(self) -> dict[str, float]:
        """Train from `self.step` to max_steps; returns the last train and eval metrics."""
        t, acc = self.recipe.train, self.acc
        sampler = StepSampler(
            len(self.train_ds),
            seed=t.seed,
            batch_size=t.batch_size,
            world_size=acc.num_processes,
            rank=acc.process_index,
            grad_accum=t.grad_accum,
            start_step=self.step,
            max_steps=t.max_steps,
        )
        loader = torch.utils.data.DataLoader(
            self.train_ds,
            batch_sampler=sampler,
            collate_fn=self.collator,
            num_workers=self.recipe.data.num_workers,
            # Its own generator: starting the iterator must not
            # draw from the global RNG that dropout uses (resume).
            generator=torch.Generator().manual_seed(t.seed),
        )
        batches = iter(loader)
        bar = tqdm(
            total=t.max_steps, initial=self.step, disable=not acc.is_main_process, desc="train"
        )
        self.model.train()
        last: dict[str, float] = {}
        while self.step < t.max_steps:
            started = time.perf_counter()
            sums = torch.zeros(7, device=acc.device)  # loss, micro, tokens, ce, bce, dice, skipped
            for _ in range(t.grad_accum):
                batch = next(batches)
                with acc.accumulate(self.model):
                    if "input_ids" in batch:
                        out = self.model(**to_device(batch, acc.device), **self.loss_kwargs)
                        loss, terms = out.loss, out.loss_terms or {}
                        tokens = float(batch["attention_mask"].sum())
                    else:
                        loss, terms, tokens = self._zero_loss(), {}, 0.0
                    acc.backward(loss)
                    if acc.sync_gradients and t.max_grad_norm > 0:
                        acc.clip_grad_norm_(self.model.parameters(), t.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                sums += torch.tensor(
                    [
                        float(loss.detach()),
                        1.0,
                        tokens,
                        float(terms.get("ce", 0.0)),
                        float(terms.get("bce", 0.0)),
                        float(terms.get("dice", 0.0)),
                        float(batch["n_skipped"]),
                    ],
                    device=acc.device,
                )
            self.scheduler.step()
            self.step += 1
            sums = acc.reduce(sums, reduction="sum")
            self.skipped += int(sums[6])
            elapsed = time.perf_counter() - started
            micro = float(sums[1])
            last = {
                "loss": float(sums[0]) / micro,
                "ce": float(sums[3]) / micro,
                "bce": float(sums[4]) / micro,
                "dice": float(sums[5]) / micro,
                "lr": self.scheduler.get_last_lr()[0],
                "tokens_per_s": float(sums[2]) / elapsed,
                "s_per_step": elapsed,
                "skipped_records": self.skipped,
            }
            bar.update(1)
            bar.set_postfix(
                loss=f"{last['loss']:.4f}",
                lr=f"{last['lr']:.2e}",
                tok_s=f"{last['tokens_per_s']:.0f}",
            )
            if self.log is not None and (self.step % t.log_every == 0 or self.step == t.max_steps):
                self.log.write("train", self.step, **last)
            if t.eval_every and self.step % t.eval_every == 0 and self.step < t.max_steps:
                self._log_eval()
            if t.save_every and self.step % t.save_every == 0 and self.step < t.max_steps:
                self.save_checkpoint()
        bar.close()
        last.update(self._log_eval())
        return last

    def _log_eval(self) -> dict[str, float]:
        metrics = self.evaluate()
        if metrics and self.log is not None:
            self.log.write("eval", self.step, **metrics)
        return metrics
