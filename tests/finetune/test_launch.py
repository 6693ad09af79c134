"""finetune.launch: what a launch asks for against what the machine has (no processes started)."""

from __future__ import annotations

import pytest

from finetune.launch import run_on_cpu
from finetune.model_setup import ConfigError

# What `accelerate launch` puts in each process's environment for the shipped configs.
CPU_2PROC = {"LOCAL_RANK": "0", "WORLD_SIZE": "2", "ACCELERATE_MIXED_PRECISION": "no"}
DDP = {"LOCAL_RANK": "0", "WORLD_SIZE": "8", "ACCELERATE_MIXED_PRECISION": "bf16"}
FSDP = {**DDP, "ACCELERATE_USE_FSDP": "true"}
DEEPSPEED = {**DDP, "ACCELERATE_USE_DEEPSPEED": "true"}
SINGLE_GPU = {"ACCELERATE_USE_CPU": "False", "CUDA_VISIBLE_DEVICES": "0", "ACCELERATE_MIXED_PRECISION": "bf16"}  # fmt: skip


def test_two_process_cpu_config_runs_on_the_cpu_over_gloo():
    assert run_on_cpu(CPU_2PROC, cuda=False) is True


def test_plain_run_without_a_launcher_stays_as_it_was():
    assert run_on_cpu({}, cuda=False) is True
    assert run_on_cpu({}, cuda=True) is False
    assert run_on_cpu({"ACCELERATE_MIXED_PRECISION": "bf16"}, cuda=False) is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (DDP, "8 GPU processes with mixed_precision bf16, but torch sees no CUDA device"),
        (FSDP, "FSDP, which accelerate enables only on GPUs"),
        (SINGLE_GPU, "asks for GPU 0"),
        ({"ACCELERATE_MIXED_PRECISION": "fp16"}, "fp16 needs a CUDA GPU"),
    ],
)
def test_gpu_configs_on_a_machine_without_cuda_stop_with_one_clear_line(env, message):
    with pytest.raises(ConfigError, match=message) as err:
        run_on_cpu(env, cuda=False)
    assert "cpu_2proc.yaml" in str(err.value) or "fp16" in message


def test_deepspeed_config_without_deepspeed_installed_says_how_to_fix():
    with pytest.raises(
        ConfigError, match="DeepSpeed, which is not installed: `pip install deepspeed`"
    ):
        run_on_cpu(DEEPSPEED, cuda=True, deepspeed=False)
    assert run_on_cpu(DEEPSPEED, cuda=True, deepspeed=True) is False


def test_gpu_machine_keeps_the_launcher_choice():
    assert run_on_cpu(DDP, cuda=True) is False
    assert run_on_cpu({"ACCELERATE_USE_CPU": "true"}, cuda=True) is True
