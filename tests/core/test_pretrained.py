"""SkyEye as a transformers PreTrainedModel: Auto classes, folders of the nn.Module era, dtype,
device_map, 4-bit quantisation, push_to_hub and gradient checkpointing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from skyeye_testing import make_tiny_model
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageTextToText,
    AutoProcessor,
    BitsAndBytesConfig,
)

import skyeye  # noqa: F401  (registers the Auto classes)
from skyeye.errors import CheckpointKeyError
from skyeye.modeling.checkpoint import ADDED_INPUT, own_state_dict
from skyeye.modeling.configuration import SkyEyeConfig
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.processing.image_processor import SkyEyeImageProcessor
from skyeye.processing.processor import SkyEyeProcessor

REPO = Path(__file__).resolve().parents[2]
LEGACY = REPO / "tests" / "fixtures" / "legacy_models"
sys.path.insert(0, str(REPO / "tests" / "hub"))
from mock_hub import MockHub  # noqa: E402

PROMPT = [{"role": "user", "content": "<image>\ndescribe this image ."}]


@pytest.fixture(scope="module")
def legacy(tmp_path_factory) -> Path:
    """A copy of the folders written by the nn.Module-era code (tests/fixtures/make_legacy_models.py).

    `llm_source` of the referenced folder is the one field that names a place on disk (where the
    fixture was written): it is pointed at this copy of the same tiny LLM. Nothing else changes.
    """
    root = tmp_path_factory.mktemp("legacy")
    for name in ("tiny-llm", "referenced", "embedded"):
        shutil.copytree(LEGACY / name, root / name)
    config_path = root / "referenced" / "config.json"
    config = json.loads(config_path.read_text())
    config["llm_source"] = str(root / "tiny-llm")
    config_path.write_text(json.dumps(config, indent=2))
    return root


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(LEGACY / "expected.safetensors")


def _legacy_logits(model, expected):
    inputs = {k: expected[k] for k in ("input_ids", "pixel_values", "wavelengths")}
    with torch.no_grad():
        out = model(**inputs, masks=[torch.zeros(16, 16)])
    return out.logits, out.mask_logits


@pytest.mark.parametrize("name", ["referenced", "embedded"])
def test_folders_of_the_nn_module_era_load_with_their_logits(legacy, expected, name):
    direct = SkyEyeForConditionalGeneration.from_pretrained(legacy / name)
    auto = AutoModelForImageTextToText.from_pretrained(legacy / name)
    assert type(auto) is SkyEyeForConditionalGeneration
    assert (name == "referenced") == hasattr(direct.language_model, "peft_config")
    logits, masks = _legacy_logits(direct, expected)
    torch.testing.assert_close(logits, expected[f"{name}.logits"], rtol=0, atol=1e-5)
    torch.testing.assert_close(masks, expected[f"{name}.mask_logits"], rtol=0, atol=1e-4)
    auto_logits, auto_masks = _legacy_logits(auto, expected)
    assert torch.equal(auto_logits, logits) and torch.equal(auto_masks, masks)


def test_build_model_draws_the_same_initial_weights_as_before(legacy):
    # PreTrainedModel.post_init must neither re-initialise nor consume random numbers: the
    # builder's seed gives the weights the nn.Module-era builder gave (the fixture's start).
    model, _ = make_tiny_model(
        legacy / "tiny-llm", use_mask_head=True, mask_head_hidden_size=32, token_pooling=2
    )
    stored = load_file(legacy / "referenced" / "model.safetensors")
    stored.pop(ADDED_INPUT)
    mine = {k: v.to(torch.bfloat16) for k, v in own_state_dict(model).items()}
    assert set(mine) == set(stored)
    assert all(torch.equal(mine[k], stored[k]) for k in stored)


def test_auto_classes_resolve_a_saved_tiny_model(tiny_model, rgb_image, tmp_path):
    model, processor = tiny_model
    model.save_pretrained(tmp_path, processor=processor)
    assert type(AutoConfig.from_pretrained(tmp_path)) is SkyEyeConfig
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is SkyEyeImageProcessor
    auto_processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(auto_processor) is SkyEyeProcessor
    auto = AutoModelForImageTextToText.from_pretrained(tmp_path)
    direct = SkyEyeForConditionalGeneration.from_pretrained(tmp_path)
    assert type(auto) is SkyEyeForConditionalGeneration and not auto.training
    batch = auto_processor(PROMPT, [rgb_image])
    with torch.no_grad():
        assert torch.equal(auto(**batch).logits, direct(**batch).logits)
        assert torch.equal(auto(**batch).logits, model.eval()(**batch).logits)


def test_auto_loading_still_checks_every_key(tiny_model, tmp_path):
    from safetensors.torch import save_file

    model, processor = tiny_model
    model.save_pretrained(tmp_path, processor=processor)
    state = load_file(tmp_path / "model.safetensors")
    del state["projector.linear_1.bias"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointKeyError, match=r"missing key\(s\): projector.linear_1.bias"):
        AutoModelForImageTextToText.from_pretrained(tmp_path)


def test_no_split_modules_name_the_llm_layers_and_the_vision_block(tiny_model):
    model, _ = tiny_model
    assert {"LlamaDecoderLayer", "Block"} <= set(model._no_split_modules)
    names = {type(m).__name__ for m in model.modules()}
    assert {"LlamaDecoderLayer", "Block"} <= names


def test_dtype_and_device_map_are_honoured(tiny_model, rgb_image, tmp_path):
    model, processor = tiny_model
    model.save_pretrained(tmp_path, processor=processor)
    batch = processor(PROMPT, [rgb_image])
    reference = SkyEyeForConditionalGeneration.from_pretrained(tmp_path)
    for dtype in (torch.bfloat16, "bfloat16"):
        loaded = SkyEyeForConditionalGeneration.from_pretrained(
            tmp_path, dtype=dtype, device_map="cpu"
        )
        assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
        assert {p.device.type for p in loaded.parameters()} == {"cpu"}
        assert loaded.dtype == torch.bfloat16
        with torch.no_grad():
            low = loaded(**batch).logits
            high = reference(**batch).logits
        assert low.dtype == torch.bfloat16
        torch.testing.assert_close(low.float(), high, rtol=0.05, atol=0.05)
    auto = SkyEyeForConditionalGeneration.from_pretrained(tmp_path, dtype="auto")
    assert {p.dtype for p in auto.parameters()} == {torch.float32}  # the LLM's own dtype


def test_4bit_quantisation_loads_on_cpu_and_generates(tiny_model, rgb_image, tmp_path):
    model, processor = tiny_model
    model.save_pretrained(tmp_path, processor=processor)
    quantised = AutoModelForImageTextToText.from_pretrained(
        tmp_path, quantization_config=BitsAndBytesConfig(load_in_4bit=True)
    )
    layers = {
        name: type(module).__name__
        for name, module in quantised.language_model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    }
    assert layers and set(layers.values()) == {"Linear4bit"}  # every decoder projection
    assert quantised.language_model.is_quantized
    # The tower, projector and mask head stay in float (only the LLM is quantised).
    assert quantised.projector.linear_1.weight.dtype == torch.float32
    assert quantised.vision_tower.trunk.blocks[0].attn.qkv.weight.dtype == torch.float32
    batch = processor(PROMPT, [rgb_image])
    new = quantised.generate(**batch, max_new_tokens=4, do_sample=False)
    assert new.shape[0] == 1 and 1 <= new.shape[1] <= 4
    with torch.no_grad():
        logits = quantised(**batch).logits
        float_logits = model.eval()(**batch).logits
    assert torch.isfinite(logits).all() and not torch.equal(logits, float_logits)


def test_push_to_hub_uploads_a_folder_that_loads_back(tiny_model, rgb_image, tmp_path, monkeypatch):
    from huggingface_hub import constants

    model, processor = tiny_model
    with MockHub() as mock:
        # The suite runs offline; the only server reached here is the local mock, named the way
        # a user names another hub (HF_ENDPOINT sets constants.ENDPOINT).
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", mock.url)
        url = model.push_to_hub("org/skyeye-test", processor=processor, token="hf_test_token")
        uploaded = mock.repos["org/skyeye-test"]
    assert url.startswith(mock.url + "/org/skyeye-test/commit/")
    assert all(a == "Bearer hf_test_token" for a in mock.auth)
    assert "model.safetensors" in uploaded and not any(p.startswith("llm/") for p in uploaded)
    folder = tmp_path / "downloaded"
    for path, data in uploaded.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    loaded = AutoModelForImageTextToText.from_pretrained(folder)
    batch = AutoProcessor.from_pretrained(folder)(PROMPT, [rgb_image])
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model.eval()(**batch).logits)


def test_gradient_checkpointing_reaches_the_llm_and_the_tower(tiny_model, rgb_image):
    model, processor = tiny_model
    example = processor.build_training_example(
        [*PROMPT, {"role": "assistant", "content": "fields and a river ."}], [rgb_image]
    )
    batch = {k: (v.unsqueeze(0) if torch.is_tensor(v) else v) for k, v in example.items()}
    model.train()

    def step() -> dict[str, torch.Tensor]:
        model.zero_grad()
        model(**batch).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = step()
    model.gradient_checkpointing_enable()
    layers = [m for m in model.modules() if type(m).__name__ == "LlamaDecoderLayer"]
    trunk = model.vision_tower.trunk
    assert all(m.gradient_checkpointing for m in layers) and trunk.gradient_checkpointing
    calls = {"llm": 0, "tower": 0}
    for part, module in (("llm", layers[0]), ("tower", trunk)):
        inner = module._gradient_checkpointing_func

        def counted(*args, _inner=inner, _part=part, **kwargs):
            calls[_part] += 1
            return _inner(*args, **kwargs)

        module._gradient_checkpointing_func = counted
    checkpointed = step()
    assert calls["llm"] >= 1 and calls["tower"] == len(trunk.blocks)
    assert set(checkpointed) == set(plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-4, atol=1e-6)
    model.gradient_checkpointing_disable()
    assert not trunk.gradient_checkpointing and not any(m.gradient_checkpointing for m in layers)


def test_from_pretrained_names_an_unknown_argument(tiny_model, tmp_path):
    model, processor = tiny_model
    model.save_pretrained(tmp_path, processor=processor)
    with pytest.raises(TypeError, match="unexpected argument.*'device_mapp'"):
        SkyEyeForConditionalGeneration.from_pretrained(tmp_path, device_mapp="cpu")
