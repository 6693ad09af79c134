"""Datasets for a recipe (pre-flight checks, task filter, held-out split) and the step-exact sampler."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from finetune.args import Recipe
from skyeye.data.dataset import InstructionDataset
from skyeye.processing.processor import SkyEyeProcessor

logger = logging.getLogger(__name__)


@dataclass
class DataReport:
    """What pre-flight found: kept records, bad ones (id, reason) and records left out by task."""

    train_records: int = 0
    eval_records: int = 0
    filtered_by_task: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)

    def bad_by_reason(self) -> dict[str, int]:
        """Bad-record counts by kind of problem."""
        kinds = ("missing image", "invalid JSON", "too long")
        return dict(
            Counter(next((k for k in kinds if r.startswith(k)), r[:60]) for _, r in self.bad)
        )


def _in_eval(record_id: str, fraction: float) -> bool:
    digest = hashlib.sha256(record_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _filter(
    dataset: InstructionDataset, tasks: set[str], report: DataReport
) -> list[tuple[Any, str]]:
    """(ref, record id) of the usable records; bad ones go to `report.bad`."""
    kept = []
    for index, ref in enumerate(dataset.refs):
        problem = dataset.check(index, tokenize=True)
        record_id = dataset.record_id(index)
        if problem is not None:
            report.bad.append((record_id, problem))
            continue
        if tasks and dataset.raw_record(index)[1].get("task") not in tasks:
            report.filtered_by_task += 1
            continue
        kept.append((ref, record_id))
    return kept


def build_datasets(
    recipe: Recipe, processor: SkyEyeProcessor, mask_size: int | None
) -> tuple[InstructionDataset, InstructionDataset | None, DataReport]:
    """Training and held-out datasets with every record checked before training starts."""
    from skyeye.chat.session import DEFAULT_SYSTEM_PROMPT

    d = recipe.data
    system = DEFAULT_SYSTEM_PROMPT if d.system_prompt == "default" else d.system_prompt
    common = dict(
        image_root=d.image_root,
        allow_absolute_paths=d.allow_absolute_paths,
        mask_size=mask_size,
        on_error=d.on_bad_record,
        system_prompt=system,
        max_length=d.max_length,
    )
    report = DataReport()
    tasks = set(d.tasks or [])
    train = InstructionDataset(d.train_files, processor, **common)
    kept = _filter(train, tasks, report)
    eval_ds = None
    if d.eval_files:
        eval_ds = InstructionDataset(d.eval_files, processor, **common)
        eval_ds.refs = [ref for ref, _ in _filter(eval_ds, tasks, report)]
    elif d.eval_fraction > 0:
        eval_ds = InstructionDataset(d.train_files, processor, **common)
        eval_ds.refs = [ref for ref, rid in kept if _in_eval(rid, d.eval_fraction)]
        kept = [(ref, rid) for ref, rid in kept if not _in_eval(rid, d.eval_fraction)]
    train.refs = [ref for ref, _ in kept]
    report.train_records = len(train)
    report.eval_records = len(eval_ds) if eval_ds is not None else 0
    if eval_ds is not None and len(eval_ds) == 0:
        eval_ds = None
    return train, eval_ds, report


class StepSampler:
    """Yields this process's micro-batches (lists of record indices) from `start_step` on.

    The records form one endless stream: epoch e is a permutation of all records seeded by
    (seed, e). Optimizer step s consumes the stream's slice [s*G, (s+1)*G) with the global batch
    G = batch_size * world_size * grad_accum, cut into world_size * grad_accum micro-batches;
    process r takes micro-batches r, r + world_size, ... So one process with grad_accum = k and
    k processes with grad_accum = 1 see exactly the same examples per step, and the data position
    of a checkpoint is just its step.
    """

    def __init__(
        self,
        n_records: int,
        *,
        seed: int,
        batch_size: int,
        world_size: int,
        rank: int,
        grad_accum: int,
        start_step: int,
        max_steps: int,
    ) -> None:
        if n_records < 1:
            raise ValueError(
                "no training records left after the checks; see the log for the reasons"
            )
        self.n, self.seed, self.batch_size = n_records, seed, batch_size
        self.world_size, self.rank, self.grad_accum = world_size, rank, grad_accum
        self.start_step, self.max_steps = start_step, max_steps
        self._perms: dict[int, list[int]] = {}

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size * self.grad_accum

    def record_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch not in self._perms:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=generator).tolist()}
        return self._perms[epoch][offset]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.max_steps):
            for a in range(self.grad_accum):
                micro = a * self.world_size + self.rank
                start = step * self.global_batch + micro * self.batch_size
                yield [self.record_at(start + j) for j in range(self.batch_size)]

    def __len__(self) -> int:
        return (self.max_steps - self.start_step) * self.grad_accum
