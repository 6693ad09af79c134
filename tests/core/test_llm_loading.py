"""`load_language_model` reads a local one-file safetensors LLM into memory (not a file mapping
that keeps every touched page resident) and gives exactly what transformers' own load gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from skyeye.modeling.llm import load_language_model


def _mapped(file: Path) -> bool:
    maps = Path("/proc/self/maps")
    return maps.exists() and str(file) in maps.read_text()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_llm_loads_as_transformers_loads_it(
    tiny_llm_dir: Path, tmp_path: Path, dtype: torch.dtype
) -> None:
    folder = shutil.copytree(tiny_llm_dir, tmp_path / "llm")  # a file no other test maps
    llm = load_language_model(str(folder), dtype=dtype)
    if dtype == torch.float32:  # stored in float32: read, not mapped
        assert not _mapped(folder / "model.safetensors")
    reference = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    assert type(llm) is type(reference)
    ours, theirs = llm.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(ours[k].dtype == dtype and torch.equal(ours[k], theirs[k]) for k in ours)
    assert llm.get_output_embeddings().weight is llm.get_input_embeddings().weight  # still tied
    assert llm.config.to_dict() == reference.config.to_dict()
    assert llm.generation_config.to_dict() == reference.generation_config.to_dict()
    assert not llm.training
