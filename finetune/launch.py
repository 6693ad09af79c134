"""What an `accelerate launch` (or torchrun) start asks for, checked against this machine.

accelerate starts several local processes only through torchrun (its MULTI_GPU launcher: a
MULTI_CPU config without mpirun starts ONE process), and it does not tell the processes that the
config said ``use_cpu``. So `finetune/accelerate_configs/cpu_2proc.yaml` uses the torchrun
launcher, and here a torchrun-started process on a machine without CUDA runs on the CPU over gloo
when the launch asked for float32 (``mixed_precision: 'no'``). A GPU config (bf16/fp16, DeepSpeed,
FSDP, a gpu id) on a machine without what it needs stops at start-up with one line naming the
problem, instead of silently training something else.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

from finetune.model_setup import ConfigError

CPU_CONFIG = "finetune/accelerate_configs/cpu_2proc.yaml"


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes")


def run_on_cpu(env: Mapping[str, str], *, cuda: bool, deepspeed: bool | None = None) -> bool:
    """True when the Accelerator must be created with ``cpu=True`` (gloo across processes).

    env: the process environment set by the launcher (``LOCAL_RANK``, ``WORLD_SIZE``,
    ``ACCELERATE_*``). cuda: whether torch sees a CUDA device. deepspeed: whether DeepSpeed is
    importable (looked up when None). Raises `ConfigError` when the launch asks for what the
    machine lacks.
    """
    if _flag(env, "ACCELERATE_USE_DEEPSPEED"):
        if deepspeed is None:
            deepspeed = importlib.util.find_spec("deepspeed") is not None
        if not deepspeed:
            raise ConfigError(
                "the accelerate config uses DeepSpeed, which is not installed: "
                "`pip install deepspeed` (on a CUDA machine), or use the ddp/fsdp config"
            )
        if not cuda:
            raise ConfigError("the accelerate config uses DeepSpeed, which needs a CUDA GPU; "
                              f"on this machine use {CPU_CONFIG}")  # fmt: skip
    if cuda:
        return _flag(env, "ACCELERATE_USE_CPU")
    if _flag(env, "ACCELERATE_USE_FSDP"):
        raise ConfigError(
            "the accelerate config uses FSDP, which accelerate enables only on GPUs (on the CPU it "
            f"would silently run plain DDP): this machine has no CUDA device; use {CPU_CONFIG}"
        )
    precision = env.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    launched = "LOCAL_RANK" in env and int(env.get("WORLD_SIZE", "1")) > 1
    if launched and precision != "no":
        raise ConfigError(
            f"the accelerate config asks for {env.get('WORLD_SIZE')} GPU processes with "
            f"mixed_precision {precision}, but torch sees no CUDA device: on this machine use "
            f"{CPU_CONFIG} (float32 processes over gloo)"
        )
    if precision == "fp16":
        raise ConfigError("mixed_precision fp16 needs a CUDA GPU; use bf16 or 'no' on the CPU")
    gpu_ids = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if env.get("ACCELERATE_USE_CPU", "").lower() == "false" and gpu_ids not in ("", "-1"):
        raise ConfigError(
            f"the accelerate config asks for GPU {gpu_ids} (gpu_ids), but torch sees no CUDA "
            f"device: use {CPU_CONFIG}, or run `python -m finetune.train` directly on the CPU"
        )
    return True
