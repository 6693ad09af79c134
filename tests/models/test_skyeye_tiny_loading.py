"""A copy of the packaged skyeye-tiny folder, as the nn.Module-era code wrote it, loads through
`SkyEyeForConditionalGeneration.from_pretrained` and `AutoModelForImageTextToText` with the numbers
that code computed (tests/fixtures/make_skyeye_tiny_reference.py), and in 4 bits on the CPU."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

import skyeye  # noqa: F401  (registers the Auto classes)
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.processing.processor import SkyEyeProcessor

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
from make_skyeye_tiny_reference import OUT as REFERENCE  # noqa: E402
from make_skyeye_tiny_reference import reference  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("skyeye-tiny") / "skyeye-tiny"
    shutil.copytree(REPO / "skyeye" / "bundled" / "skyeye-tiny", copy)
    return copy


@pytest.fixture(scope="module")
def processor(folder) -> SkyEyeProcessor:
    return SkyEyeProcessor.from_pretrained(folder)


def _check(numbers: dict, recorded: dict) -> None:
    assert numbers["top_ids"] == recorded["top_ids"]
    torch.testing.assert_close(
        torch.tensor(numbers["top_values"]), torch.tensor(recorded["top_values"]), rtol=0, atol=1e-4
    )
    assert numbers["mask_count"] == recorded["mask_count"] == 1
    assert numbers["mask_logits_sum"] == pytest.approx(recorded["mask_logits_sum"], rel=1e-5)
    assert numbers["greedy_ids"] == recorded["greedy_ids"]


def test_todays_folder_loads_with_the_recorded_numbers(folder, processor) -> None:
    torch.set_num_threads(1)
    recorded = json.loads(REFERENCE.read_text())
    merged = SkyEyeForConditionalGeneration.from_pretrained(folder, merge_adapter=True)
    _check(reference(merged, processor), recorded["merged"])
    del merged
    auto = AutoModelForImageTextToText.from_pretrained(folder)
    assert type(auto) is SkyEyeForConditionalGeneration
    assert hasattr(auto.language_model, "peft_config")  # the adapter attached, as by default
    _check(reference(auto, processor), recorded["attached"])


def test_4bit_skyeye_tiny_answers_on_the_cpu(folder, processor) -> None:
    model = SkyEyeForConditionalGeneration.from_pretrained(
        folder, quantization_config=BitsAndBytesConfig(load_in_4bit=True), merge_adapter=True
    )
    assert model.language_model.is_quantized
    numbers = reference(model, processor)
    recorded = json.loads(REFERENCE.read_text())["merged"]
    # A 4-bit LLM is not the float one, but it still reads the image and answers.
    assert len(numbers["greedy_ids"]) >= 1 and numbers["mask_count"] == 1
    assert len(set(numbers["top_ids"][:5]) & set(recorded["top_ids"][:5])) >= 1
