"""Atomic, resumable training checkpoints.

`OUTPUT/checkpoints/checkpoint-<step>/` holds:

- `trainable.safetensors`: the trained weights only (the model delta: LoRA, projector, mask head,
  trained token rows), keyed by `named_parameters()` names;
- `optimizer.pt`, `scheduler.pt` (plain state dicts, loaded with `weights_only=True`);
- `rng-<rank>.pt`: Python, NumPy and torch RNG states of each process;
- `trainer_state.json`: step, data position and counters; written last.

A checkpoint is written into a hidden temporary folder and renamed into place (`os.replace` is
atomic on POSIX), and `latest` is then rewritten the same way, so a run killed at any instant
(SIGKILL, power loss) leaves either the previous or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
LATEST = "latest"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(
        ("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0)
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters of `model` (an unwrapped module), detached on the CPU."""
    return {
        n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
    }


def _write_file(path: Path, write: Any) -> None:
    write(path)
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


class CheckpointManager:
    """Writes and finds checkpoints under `root` (OUTPUT/checkpoints)."""

    def __init__(self, root: str | Path, keep: int = 2) -> None:
        self.root = Path(root)
        self.keep = max(1, keep)

    def tmp_dir(self, step: int) -> Path:
        return self.root / f".checkpoint-{step}.tmp"

    def begin(self, step: int) -> Path:
        """Create an empty temporary folder for `step` (main process, before the others write)."""
        tmp = self.tmp_dir(step)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    @staticmethod
    def write_rank(tmp: Path, rank: int) -> None:
        """Each process writes its RNG state into the temporary folder."""
        _write_file(tmp / f"rng-{rank}.pt", lambda p: torch.save(rng_state(), p))

    def write_main(
        self,
        tmp: Path,
        model_state: dict[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        trainer_state: dict[str, Any],
    ) -> None:
        """The main process writes weights, optimizer, scheduler and the state file."""
        _write_file(
            tmp / "trainable.safetensors",
            lambda p: save_file(model_state, str(p), metadata={"format": "pt"}),
        )
        _write_file(tmp / "optimizer.pt", lambda p: torch.save(optimizer.state_dict(), p))
        _write_file(tmp / "scheduler.pt", lambda p: torch.save(scheduler.state_dict(), p))
        _write_file(tmp / STATE_FILE, lambda p: p.write_text(json.dumps(trainer_state, indent=2)))

    def commit(self, step: int) -> Path:
        """Rename the temporary folder into place, point `latest` at it, prune old ones."""
        tmp, final = self.tmp_dir(step), self.root / f"checkpoint-{step}"
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.root)
        _atomic_text(self.root / LATEST, final.name + "\n")
        for old in self.complete()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            p
            for p in self.root.glob("checkpoint-*")
            if p.is_dir() and (p / STATE_FILE).is_file() and p.name.split("-")[-1].isdigit()
        ]
        return sorted(found, key=lambda p: int(p.name.split("-")[-1]))

    def latest(self) -> Path | None:
        """The checkpoint to resume from (`latest`, else the newest complete one)."""
        pointer = self.root / LATEST
        if pointer.is_file():
            candidate = self.root / pointer.read_text().strip()
            if (candidate / STATE_FILE).is_file():
                return candidate
        complete = self.complete()
        return complete[-1] if complete else None

    @staticmethod
    def load(
        folder: Path,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        rank: int,
    ) -> dict[str, Any]:
        """Restore weights, optimizer, scheduler and this process's RNG; returns the trainer state."""
        weights = load_file(str(folder / "trainable.safetensors"))
        expected = {n for n, p in model.named_parameters() if p.requires_grad}
        if set(weights) != expected:
            missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
            raise ValueError(
                f"{folder} was written by a run that trains other weights (missing {missing[:5]}, "
                f"unexpected {extra[:5]}); resume with the same recipe or start a new output_dir"
            )
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        rng_file = folder / f"rng-{rank}.pt"
        if rng_file.is_file():
            set_rng_state(torch.load(rng_file, weights_only=True))
        return json.loads((folder / STATE_FILE).read_text())
