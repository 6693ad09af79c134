"""Helpers for the fine-tuning tests: a recipe for the tiny random SkyEye on the instruction fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def training_env() -> dict[str, str]:
    """Environment of a training subprocess: offline, one thread, this checkout importable."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
    }
FIXTURES = REPO / "tests" / "fixtures" / "instruct"
GOLDEN = FIXTURES / "golden"
TRAIN_FILES = ["skyeyegpt", "llava", "terrascope", "earthmind"]


def write_recipe(folder: Path, llm_dir: Path, **sections: dict) -> Path:
    """A stage-2 recipe for the tiny model (hidden 32, 16-px images); `sections` update it."""
    recipe = {
        "model": {
            "vision": "tiny-test",
            "llm": str(llm_dir),
            "image_size": 16,
            "mask_head_hidden_size": 32,
            "sar_wavelength": 5.405,
        },
        "data": {
            "train_files": [str(GOLDEN / f"{n}.jsonl") for n in TRAIN_FILES],
            "image_root": str(FIXTURES),
            "system_prompt": None,
        },
        "lora": {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0},
        "train": {
            "stage": 2,
            "output_dir": str(folder / "run"),
            "max_steps": 4,
            "batch_size": 2,
            "lr": 5e-3,
            "save_every": 0,
            "seed": 0,
        },
    }
    for name, values in sections.items():
        recipe[name].update(values)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture
def tiny_recipe(tmp_path: Path, tiny_llm_dir: Path):
    """Factory: tiny_recipe(**sections) -> path of a recipe YAML in tmp_path."""
    return lambda **sections: write_recipe(tmp_path, tiny_llm_dir, **sections)
