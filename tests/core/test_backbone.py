"""The model split as transformers' Llava: `SkyEyeModel` (tower, projector, LLM, image merge) under
`SkyEyeForConditionalGeneration` (mask decoder, losses, generation), with every weight name kept."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from skyeye_testing import make_tiny_model
from transformers import AutoModel

import skyeye  # noqa: F401  (registers the Auto classes)
from skyeye.errors import CheckpointKeyError
from skyeye.modeling.backbone import SkyEyeModel
from skyeye.modeling.model import SkyEyeForConditionalGeneration

PROMPT = [{"role": "user", "content": "<image><image>\ndescribe these images ."}]


@pytest.fixture
def seg_model(tiny_llm_dir):
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    return model.eval(), processor


def test_the_model_sits_on_a_backbone_with_public_image_features(seg_model, rgb_image):
    model, processor = seg_model
    assert type(model.model) is SkyEyeModel and model.base_model is model.model
    for part in ("vision_tower", "projector", "language_model"):
        assert getattr(model.model, part) is getattr(model, part)
    batch = processor(PROMPT, [rgb_image, rgb_image])
    with torch.no_grad():
        features = model.model.get_image_features(batch["pixel_values"], batch["wavelengths"])
        vision = model.model.get_vision_features(batch["pixel_values"], batch["wavelengths"])
        out = model(**batch)
    width = model.config.text_config.hidden_size
    assert features.shape == (2, model.config.num_image_tokens, width)
    grid = model.config.vision_config.grid_size
    assert vision.shape == (2, grid * grid, model.config.vision_config.hidden_size)
    assert torch.equal(features, out.image_features)
    assert torch.equal(
        model.get_image_features(batch["pixel_values"], batch["wavelengths"]), features
    )
    # The backbone's own forward gives the logits of the model on top (which adds no layer to them).
    with torch.no_grad():
        assert torch.equal(model.model(**batch).logits, out.logits)


def test_weight_names_are_those_before_the_split(seg_model):
    model, _ = seg_model
    parts = {name.split(".", 1)[0] for name, _ in model.named_parameters()}
    assert parts == {"vision_tower", "projector", "language_model", "mask_head"}
    keys = set(model.state_dict())
    assert not any(k.startswith("model.") for k in keys)
    assert {k.split(".", 1)[0] for k in model.model.state_dict()} == {
        "vision_tower",
        "projector",
        "language_model",
    }


def test_a_part_swapped_on_the_model_is_swapped_in_the_backbone(seg_model, rgb_image):
    from peft import LoraConfig, get_peft_model

    model, processor = seg_model
    batch = processor(PROMPT, [rgb_image, rgb_image])
    with torch.no_grad():
        before = model(**batch).logits
    torch.manual_seed(1)
    model.language_model = get_peft_model(
        model.language_model,
        LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    assert model.model.language_model is model.language_model
    with torch.no_grad():
        assert not torch.allclose(model(**batch).logits, before, atol=1e-4)
    model.train()
    assert model.model.training and model.vision_tower.training
    model.eval()
    assert not model.model.training


def test_the_backbone_loads_from_a_model_folder_without_its_mask_decoder(
    seg_model, rgb_image, tmp_path
):
    model, processor = seg_model
    model.save_pretrained(tmp_path, processor=processor)
    batch = processor(PROMPT, [rgb_image, rgb_image])
    backbone = SkyEyeModel.from_pretrained(tmp_path)
    auto = AutoModel.from_pretrained(tmp_path)
    assert type(auto) is SkyEyeModel and not hasattr(backbone, "mask_head")
    with torch.no_grad():
        reference = model(**batch)
        for loaded in (backbone, auto):
            out = loaded(**batch)
            assert torch.equal(out.image_features, reference.image_features)
            assert torch.equal(out.logits, reference.logits)
    # Only the decoder's keys are left to the class on top: any other key is still checked.
    state = load_file(tmp_path / "model.safetensors")
    state["projector.extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointKeyError, match=r"unexpected key\(s\): projector.extra.weight"):
        SkyEyeModel.from_pretrained(tmp_path)


def test_the_model_on_top_still_needs_its_mask_decoder_weights(seg_model, tmp_path):
    model, processor = seg_model
    model.save_pretrained(tmp_path, processor=processor)
    state = load_file(tmp_path / "model.safetensors")
    dropped = sorted(k for k in state if k.startswith("mask_head."))[0]
    del state[dropped]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointKeyError, match=rf"missing key\(s\): {dropped}"):
        SkyEyeForConditionalGeneration.from_pretrained(tmp_path)
