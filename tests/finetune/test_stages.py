"""What trains in each stage, and start-up errors for impossible configurations."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from ft_helpers import write_recipe

from finetune.args import load_recipe
from finetune.model_setup import (
    ConfigError,
    added_token_ids,
    check_recipe,
    configure_trainable,
    load_or_build,
)


def _setup(tmp_path, tiny_llm_dir, **sections):
    recipe = load_recipe(write_recipe(tmp_path, tiny_llm_dir, **sections), {})
    model, processor = load_or_build(recipe)
    model.new_token_ids = added_token_ids(model, processor)
    return recipe, model


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_stage1_trains_only_the_projector(tmp_path, tiny_llm_dir):
    recipe, model = _setup(tmp_path, tiny_llm_dir, train={"stage": 1})
    counts = configure_trainable(model, recipe, model.new_token_ids)
    assert counts["projector"] == _numel(model.projector) > 0
    assert counts["vision_tower"] == counts["language_model"] == counts["mask_head"] == 0
    assert counts["total"] == counts["projector"]
    assert not hasattr(model.language_model, "peft_config")


def test_stage1_can_train_the_tower(tmp_path, tiny_llm_dir):
    recipe, model = _setup(tmp_path, tiny_llm_dir, train={"stage": 1, "train_vision_tower": True})
    counts = configure_trainable(model, recipe, model.new_token_ids)
    assert counts["vision_tower"] == _numel(model.vision_tower)
    assert counts["language_model"] == 0


def test_stage2_trains_lora_projector_mask_head_and_new_rows(tmp_path, tiny_llm_dir):
    recipe, model = _setup(tmp_path, tiny_llm_dir)
    counts = configure_trainable(model, recipe, model.new_token_ids)
    assert counts["vision_tower"] == 0
    assert counts["projector"] == _numel(model.projector)
    assert counts["mask_head"] == _numel(model.mask_head)
    llm_names = [n for n, p in model.language_model.named_parameters() if p.requires_grad]
    assert llm_names and all("lora_" in n or "trainable_tokens" in n for n in llm_names)
    # The [SEG], <p>, </p> rows train (peft trainable tokens), not the whole embedding.
    rows = [
        p
        for n, p in model.language_model.named_parameters()
        if p.requires_grad and "trainable_tokens" in n
    ]
    assert len(model.new_token_ids) == 3 and model.config.seg_token_id in model.new_token_ids
    assert sum(p.shape[0] for p in rows) == 3


def test_missing_lora_target_names_the_fix(tmp_path, tiny_llm_dir):
    recipe, model = _setup(tmp_path, tiny_llm_dir, lora={"lora_targets": ["q_proj", "c_attn"]})
    with pytest.raises(ConfigError, match=r"c_attn.*q_proj.*lora.lora_targets"):
        configure_trainable(model, recipe, model.new_token_ids)


def test_qlora_without_bitsandbytes_stops_at_start(tmp_path, tiny_llm_dir, monkeypatch):
    recipe = load_recipe(write_recipe(tmp_path, tiny_llm_dir, model={"qlora": True}), {})
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real(name, *a),
    )
    with pytest.raises(ConfigError, match="pip install -c constraints.txt bitsandbytes"):
        check_recipe(recipe)


def test_recipe_overrides_and_unknown_keys(tmp_path, tiny_llm_dir):
    from finetune.args import parse_args

    path = write_recipe(tmp_path, tiny_llm_dir)
    recipe = parse_args(
        [
            "--recipe",
            str(path),
            "--lr",
            "1e-4",
            "--train.max_steps",
            "7",
            "--lora_targets",
            "[q_proj]",
        ]
    )
    assert (
        recipe.train.lr == 1e-4
        and recipe.train.max_steps == 7
        and recipe.lora.lora_targets == ["q_proj"]
    )
    with pytest.raises(ValueError, match=r"'lr'.*belong to.*train"):
        write_recipe(tmp_path, tiny_llm_dir, model={"lr": 1.0})
        load_recipe(tmp_path / "recipe.yaml", {})


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_qlora_puts_lora_on_a_4bit_llm(tmp_path, tiny_llm_dir):
    recipe, model = _setup(tmp_path, tiny_llm_dir, model={"qlora": True})
    counts = configure_trainable(model, recipe, model.new_token_ids)
    kinds = {type(m).__name__ for m in model.language_model.modules()}
    assert "Linear4bit" in kinds and counts["language_model"] > 0
    frozen_4bit = [
        p
        for n, p in model.language_model.named_parameters()
        if "base_layer" in n and p.dtype == torch.uint8
    ]
    assert frozen_4bit and not any(p.requires_grad for p in frozen_4bit)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_qlora_from_a_saved_folder_keeps_training_its_adapter(tmp_path, tiny_llm_dir):
    # The folder's LLM is quantised while loading (quantization_config) and its stored LoRA
    # adapter goes on the 4-bit LLM, trainable; the added token rows are the folder's own.
    from peft import LoraConfig, get_peft_model
    from skyeye_testing import make_tiny_model

    start, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    with torch.no_grad():
        start.language_model.get_input_embeddings().weight[-3:] += 1.0
    stored_rows = start.language_model.get_input_embeddings().weight[-3:].clone()
    start.language_model = get_peft_model(
        start.language_model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    start.save_pretrained(tmp_path / "start", processor=processor)
    recipe, model = _setup(
        tmp_path, tiny_llm_dir, model={"qlora": True, "model": str(tmp_path / "start")}
    )
    assert hasattr(model.language_model, "peft_config")
    kinds = {type(m).__name__ for m in model.language_model.modules()}
    assert "Linear4bit" in kinds
    trainable = [n for n, p in model.language_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    rows = model.language_model.get_input_embeddings().weight[-3:]
    torch.testing.assert_close(rows.float(), stored_rows)
    assert model.projector.linear_1.weight.dtype == torch.float32


def test_gradient_checkpointing_reaches_the_lora_llm_and_the_tower(tmp_path, tiny_llm_dir):
    recipe, model = _setup(
        tmp_path, tiny_llm_dir, train={"gradient_checkpointing": True, "train_vision_tower": True}
    )
    configure_trainable(model, recipe, model.new_token_ids)
    layers = [m for m in model.modules() if type(m).__name__ == "LlamaDecoderLayer"]
    assert layers and all(m.gradient_checkpointing for m in layers)
    assert model.vision_tower.trunk.gradient_checkpointing
    assert model.language_model.config.use_cache is False


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--scheduler", "cosin", "train.scheduler must be one of"),
        ("--on_bad_record", "ignore", "data.on_bad_record must be skip or stop"),
        ("--new_token_rows", "all", "lora.new_token_rows must be one of"),
        ("--dtype", "float64", "model.dtype 'float64' unknown"),
        ("--save_dtype", "fp16", "train.save_dtype 'fp16' unknown"),
    ],
)
def test_option_fields_are_checked_at_start(tmp_path, tiny_llm_dir, option, value, message):
    from finetune.args import parse_args

    recipe = parse_args(["--recipe", str(write_recipe(tmp_path, tiny_llm_dir)), option, value])
    with pytest.raises(ConfigError, match=message):
        check_recipe(recipe)


def test_option_literals_match_the_library():
    from typing import get_args

    from finetune.args import DtypeName, ProjectorType
    from skyeye.constants import DTYPE_NAMES
    from skyeye.modeling.configuration import PROJECTOR_TYPES

    assert get_args(DtypeName) == DTYPE_NAMES
    assert get_args(ProjectorType) == PROJECTOR_TYPES


def test_every_stage_uses_one_warmup_cosine_schedule():
    from transformers import get_cosine_schedule_with_warmup

    from finetune.schedule import make_scheduler

    def lrs(make):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make(opt)
        out = []
        for _ in range(12):
            out.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        return out

    ours = lrs(lambda o: make_scheduler(o, "cosine", 4, 12))
    assert ours == lrs(lambda o: get_cosine_schedule_with_warmup(o, 4, 12))
    # Warm-up climbs linearly to the peak at step 4, then decays towards 0.
    assert ours[:5] == [0.0, 0.25, 0.5, 0.75, 1.0] and 0 < ours[-1] < 0.05
    assert lrs(lambda o: make_scheduler(o, "constant", 2, 12))[2:] == [1.0] * 10
    with pytest.raises(ValueError, match="scheduler must be one of"):
        make_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), "step", 0, 5)
