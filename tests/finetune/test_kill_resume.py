"""Issue 15 (item 4 and the kill test): the recipe the README tells people to run
(`finetune/recipes/tiny-test.yaml`, `llm_random_init`) is SIGKILLed after a checkpoint and
during a checkpoint save; on restart every checkpoint on disk is whole (its manifest verifies)
and `--resume true` ends with the same weights, bit for bit, as an uninterrupted run — the
trained delta and every tensor of the saved model folder (frozen tower included)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ft_helpers import REPO, training_env
from safetensors.torch import load_file

from finetune.state import LATEST, verify

RECIPE = REPO / "finetune" / "recipes" / "tiny-test.yaml"
STEPS = ["--max_steps", "6", "--save_every", "2"]


def _cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "finetune.train", "--recipe", str(RECIPE),
            "--output_dir", str(out), *STEPS, *extra]  # fmt: skip


def _start(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        _cmd(out), cwd=REPO, env=training_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the final checkpoint's delta and of the saved model folder."""
    found = {}
    files = [run / "checkpoints" / "checkpoint-6" / "trainable.safetensors"]
    files += sorted((run / "model").rglob("*.safetensors"))
    for f in files:
        for name, value in load_file(str(f)).items():
            found[f"{f.relative_to(run)}:{name}"] = value
    return found


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference run, started at once so it runs beside the interrupted ones."""
    out = tmp_path_factory.mktemp("full") / "run"
    proc = _start(out)

    def wait() -> dict[str, torch.Tensor]:
        assert proc.wait(timeout=600) == 0
        return _tensors(out)

    yield wait
    if proc.poll() is None:
        proc.kill()


def _kill_when(proc: subprocess.Popen, ready, what: str, delay: float = 0.0) -> None:
    deadline = time.time() + 400
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.001)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, f"the run ended before {what}"


def _resume_and_compare(out: Path, expected: dict[str, torch.Tensor]) -> None:
    checkpoints = out / "checkpoints"
    for folder in checkpoints.glob("checkpoint-*"):
        assert verify(folder) == [], folder  # a whole checkpoint, or none at all
    if (checkpoints / LATEST).is_file():
        named = checkpoints / (checkpoints / LATEST).read_text().strip()
        assert verify(named) == [], named
    assert not (out / "model").exists()
    resumed = subprocess.run(
        _cmd(out, "--resume", "true"), cwd=REPO, env=training_env(), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = _tensors(out)
    assert got.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not different, different[:10]


@pytest.mark.slow
def test_tiny_recipe_killed_after_a_checkpoint_resumes_bit_identical(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = _start(out)
    first = out / "checkpoints" / "checkpoint-2"
    delay = random.Random(15).uniform(0.0, 0.3)  # noqa: S311 - a seeded random moment
    _kill_when(proc, first.is_dir, "checkpoint-2", delay)
    _resume_and_compare(out, uninterrupted())


@pytest.mark.slow
def test_tiny_recipe_killed_during_a_checkpoint_save_resumes_bit_identical(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = _start(out)
    checkpoints = out / "checkpoints"

    def saving() -> bool:  # the temporary folder of a save in progress (after the first one)
        return checkpoints.is_dir() and any(
            p.name.startswith(".checkpoint-") and p.name != ".checkpoint-2.tmp"
            for p in checkpoints.iterdir()
        )

    _kill_when(proc, saving, "a second checkpoint save")
    assert saving(), "killed outside a save"  # its temporary folder is left behind
    _resume_and_compare(out, uninterrupted())
