"""Atomic, verified, resumable training checkpoints.

`OUTPUT/checkpoints/checkpoint-<step>/` holds:

- `trainable.safetensors`: the trained weights only (the model delta: LoRA, projector, mask head,
  trained token rows), keyed by `named_parameters()` names;
- `optimizer.pt`, `scheduler.pt` (plain state dicts, loaded with `weights_only=True`);
- `rng-<rank>.pt`: Python, NumPy and torch RNG states of each process;
- `trainer_state.json`: step, data position and counters;
- `manifest.json`: size and sha256 of every other file; written last.

A checkpoint is written into a hidden temporary folder and renamed into place (`os.replace` is
atomic on POSIX), and `latest` is then rewritten the same way, so a run killed at any instant
(SIGKILL, power loss) leaves either the previous or the new checkpoint, never a torn one. Files
are serialised in memory and then written, so a full disk is an `OSError` (ENOSPC) reported as
`DiskFullError` in one line, not a torch `inline_container` error. On resume every file is checked
against the manifest before anything is loaded; a checkpoint that fails (a file truncated or
changed later) is skipped with a warning and the newest intact one is used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save

from skyeye.atomic import is_disk_full, write_text
from skyeye.errors import CheckpointError, DiskFullError

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
MANIFEST = "manifest.json"
LATEST = "latest"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync; a full disk raises `DiskFullError` naming the folder."""
    try:
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        if is_disk_full(err):
            free = shutil.disk_usage(path.parent).free / 1e6
            raise DiskFullError(
                f"checkpoint not saved: the disk holding {path.parent.parent} is full "
                f"({free:.1f} MB free) while writing {path.name} ({len(data) / 1e6:.1f} MB): free "
                "space or choose another output_dir; the previous checkpoint is intact"
            ) from None
        raise


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def verify(folder: Path) -> list[str]:
    """Problems of checkpoint `folder` (empty when every file matches the manifest).

    A folder written before manifests existed is accepted when its state file is there.
    """
    if not (folder / STATE_FILE).is_file():
        return [f"{folder}: no {STATE_FILE}"]
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return []
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"{manifest_path}: unreadable manifest ({err})"]
    problems = []
    for name, entry in entries.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, {entry['size']} when saved")
        elif _sha256(path) != entry["sha256"]:
            problems.append(f"{path}: contents changed since it was saved (sha256 differs)")
    return problems


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
        _write_file(tmp / f"rng-{rank}.pt", _torch_bytes(rng_state()))

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
            tmp / "trainable.safetensors", save(model_state, metadata={"format": "pt"})
        )
        _write_file(tmp / "optimizer.pt", _torch_bytes(optimizer.state_dict()))
        _write_file(tmp / "scheduler.pt", _torch_bytes(scheduler.state_dict()))
        _write_file(tmp / STATE_FILE, json.dumps(trainer_state, indent=2).encode())

    def abort(self, step: int) -> None:
        """Remove the temporary folder of a save that failed (e.g. a full disk)."""
        shutil.rmtree(self.tmp_dir(step), ignore_errors=True)

    def commit(self, step: int) -> Path:
        """Write the manifest (sizes and sha256 of every file, last), rename the temporary
        folder into place, point `latest` at it, prune old ones."""
        tmp, final = self.tmp_dir(step), self.root / f"checkpoint-{step}"
        files = {
            p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in _files(tmp)
        }
        _write_file(tmp / MANIFEST, json.dumps({"files": files}, indent=1).encode())
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.root)
        write_text(self.root / LATEST, final.name + "\n")
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
        """The checkpoint `latest` points at, else the newest complete one (not verified)."""
        pointer = self.root / LATEST
        if pointer.is_file():
            candidate = self.root / pointer.read_text().strip()
            if (candidate / STATE_FILE).is_file():
                return candidate
        complete = self.complete()
        return complete[-1] if complete else None

    def candidates(self) -> list[Path]:
        """Checkpoints to try on resume, best first: `latest`, then the others newest first."""
        order = list(reversed(self.complete()))
        first = self.latest()
        if first is not None and first in order:
            order.remove(first)
            order.insert(0, first)
        return order

    def load_newest_valid(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        rank: int,
    ) -> tuple[Path, dict[str, Any]] | None:
        """Restore the newest checkpoint whose files match its manifest and load; a broken one
        is skipped with a warning. Returns (folder, trainer state), or None when none is usable.
        Nothing is changed in the model or optimizer until a checkpoint has been read whole."""
        for folder in self.candidates():
            problems = verify(folder)
            if not problems:
                try:
                    return folder, self.load(folder, model, optimizer, scheduler, rank)
                except CheckpointError as err:
                    problems = [str(err)]
            logger.warning(
                "checkpoint %s is damaged, not resuming from it (%s); trying an older one",
                folder,
                "; ".join(problems[:3]),
            )
        return None

    @staticmethod
    def load(
        folder: Path,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        rank: int,
    ) -> dict[str, Any]:
        """Restore weights, optimizer, scheduler and this process's RNG; returns the trainer state.

        Every file is read before anything is restored; `CheckpointError` when one is unreadable.
        """
        try:
            weights = load_file(str(folder / "trainable.safetensors"))
            opt_state = torch.load(folder / "optimizer.pt", weights_only=True)
            sched_state = torch.load(folder / "scheduler.pt", weights_only=True)
            rng_file = folder / f"rng-{rank}.pt"
            rng = torch.load(rng_file, weights_only=True) if rng_file.is_file() else None
            state = json.loads((folder / STATE_FILE).read_text())
        except Exception as err:  # noqa: BLE001 - safetensors/torch/json raise many types
            raise CheckpointError(
                f"{folder}: cannot read the checkpoint ({type(err).__name__}: {err})"
            ) from None
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
        optimizer.load_state_dict(opt_state)
        scheduler.load_state_dict(sched_state)
        if rng is not None:
            set_rng_state(rng)
        return state
