"""`accelerate launch --config_file finetune/accelerate_configs/...` as people type it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ft_helpers import REPO, write_recipe
from safetensors.torch import load_file

CONFIGS = REPO / "finetune" / "accelerate_configs"


def _run(args: list[str], launch: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("ACCELERATE_USE_CPU", None)
    prefix = (
        [sys.executable, "-m", "accelerate.commands.launch", *launch]
        if launch
        else [sys.executable]
    )
    cmd = [*prefix, "-m", "finetune.train", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_cpu_2proc_config_trains_with_world_size_2_like_one_process_with_accumulation(
    tmp_path, tiny_llm_dir
):
    recipe = write_recipe(tmp_path, tiny_llm_dir, train={"max_steps": 6, "batch_size": 1})
    one, two = tmp_path / "one", tmp_path / "two"
    single = _run(["--recipe", str(recipe), "--output_dir", str(one), "--grad_accum", "2"])
    assert single.returncode == 0, single.stderr[-2000:]
    double = _run(
        ["--recipe", str(recipe), "--output_dir", str(two), "--grad_accum", "1"],
        ["--config_file", str(CONFIGS / "cpu_2proc.yaml")],
    )
    assert double.returncode == 0, double.stderr[-3000:]
    start = next(r for r in _log(two) if r["kind"] == "start")
    assert start["processes"] == 2
    losses = {run: [r["loss"] for r in _log(run) if r["kind"] == "train"] for run in (one, two)}
    assert len(losses[two]) == 6
    assert losses[two] == pytest.approx(losses[one], rel=1e-4)
    a = load_file(str(one / "checkpoints" / "checkpoint-6" / "trainable.safetensors"))
    b = load_file(str(two / "checkpoints" / "checkpoint-6" / "trainable.safetensors"))
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), name


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_gpu_ddp_config_on_a_cpu_machine_stops_with_one_clear_line(tmp_path, tiny_llm_dir):
    recipe = write_recipe(tmp_path, tiny_llm_dir)
    result = _run(
        ["--recipe", str(recipe), "--output_dir", str(tmp_path / "run")],
        ["--config_file", str(CONFIGS / "ddp.yaml"), "--num_processes", "2"],
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no CUDA device" in errors[0] and "cpu_2proc.yaml" in errors[0]
    assert not (tmp_path / "run" / "log.jsonl").exists()
