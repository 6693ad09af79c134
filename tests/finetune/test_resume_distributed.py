"""Exact resume after SIGKILL, and two gloo processes matching one process with accumulation."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ft_helpers import REPO, training_env, write_recipe
from safetensors.torch import load_file


def _train(args: list[str], launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable]) + ["-m", "finetune.train", *args]
    env = {**training_env(), "ACCELERATE_USE_CPU": "true"} if launcher else training_env()
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"checkpoint-{step}" / "trainable.safetensors"))


@pytest.mark.slow
def test_resume_after_sigkill_ends_with_identical_weights(tmp_path, tiny_llm_dir):
    # Dropout on, so the restored RNG state matters too.
    recipe = write_recipe(
        tmp_path,
        tiny_llm_dir,
        lora={"lora_dropout": 0.1},
        train={"max_steps": 10, "save_every": 2, "keep_checkpoints": 2},
    )
    full, killed = tmp_path / "full", tmp_path / "killed"
    done = _train(["--recipe", str(recipe), "--output_dir", str(full)])
    assert done.returncode == 0, done.stderr[-2000:]

    cmd = [
        sys.executable,
        "-m",
        "finetune.train",
        "--recipe",
        str(recipe),
        "--output_dir",
        str(killed),
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=training_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "checkpoint-4").is_dir() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "model").exists(), "the run finished before it could be killed"

    resumed = _train(["--recipe", str(recipe), "--output_dir", str(killed), "--resume", "true"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "start"] == [0, 0]
    expected, got = _weights(full, 10), _weights(killed, 10)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_accumulation(tmp_path, tiny_llm_dir):
    recipe = write_recipe(tmp_path, tiny_llm_dir, train={"max_steps": 6, "batch_size": 1})
    one, two = tmp_path / "one", tmp_path / "two"
    single = _train(["--recipe", str(recipe), "--output_dir", str(one), "--grad_accum", "2"])
    assert single.returncode == 0, single.stderr[-2000:]
    # torchrun sets RANK / WORLD_SIZE; with ACCELERATE_USE_CPU accelerate runs MULTI_CPU over gloo.
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
    ]
    double = _train(
        ["--recipe", str(recipe), "--output_dir", str(two), "--grad_accum", "1"], launcher
    )
    assert double.returncode == 0, double.stderr[-3000:]

    def losses(run: Path) -> list[float]:
        lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        assert next(r for r in lines if r["kind"] == "start")["processes"] == (
            2 if run == two else 1
        )
        return [r["loss"] for r in lines if r["kind"] == "train"]

    assert losses(two) == pytest.approx(losses(one), rel=1e-4)
    a, b = _weights(one, 6), _weights(two, 6)
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), name
