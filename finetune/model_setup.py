"""Build or load the model for a recipe, then choose what trains (stage 1 / stage 2, LoRA, QLoRA).

Stage 1 (LLaVA / SkyEyeGPT alignment): everything frozen except the projector (and optionally the
vision tower). Stage 2: LoRA adapters on the LLM + projector + mask head, and the embedding rows of
the tokens SkyEye added to the LLM (`[SEG]`, `<p>`, `</p>`): those rows start as a mean of the
others, so without training them the model could not learn to emit `[SEG]`. They are trained
through peft's `trainable_token_indices` (only the listed rows train; the adapter stores just
those rows; tied input/output embeddings stay tied), or `modules_to_save` (a full trainable copy
of the embedding and LM head: simple, but the adapter then holds the whole matrix, ~110 MB for
SmolLM2).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetune.args import NEW_TOKEN_ROWS, ON_BAD_RECORD, SCHEDULERS, Recipe
from skyeye.atomic import atomic_dir
from skyeye.constants import DTYPE_NAMES, torch_dtype
from skyeye.errors import ConfigError
from skyeye.processing.processor import SkyEyeProcessor

logger = logging.getLogger(__name__)



def check_recipe(recipe: Recipe) -> None:
    """Start-up checks that need no model (raise `ConfigError`)."""
    m, d, lo, t = recipe.model, recipe.data, recipe.lora, recipe.train
    if t.stage not in (1, 2):
        raise ConfigError(f"train.stage must be 1 (alignment) or 2 (LoRA), got {t.stage}")
    if m.qlora and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            "model.qlora needs bitsandbytes, which is not installed: run "
            "`pip install -c constraints.txt bitsandbytes` (or `pip install 'skyeye[quant]'`), "
            "or set --qlora false"
        )
    if m.dtype not in DTYPE_NAMES:
        raise ConfigError(f"model.dtype {m.dtype!r} unknown; use one of {sorted(DTYPE_NAMES)}")
    if d.on_bad_record not in ON_BAD_RECORD:
        raise ConfigError(f"data.on_bad_record must be skip or stop, got {d.on_bad_record!r}")
    if lo.new_token_rows not in NEW_TOKEN_ROWS:
        raise ConfigError(
            f"lora.new_token_rows must be one of {NEW_TOKEN_ROWS}, got {lo.new_token_rows!r}"
        )
    if t.scheduler not in SCHEDULERS:
        raise ConfigError(f"train.scheduler must be one of {SCHEDULERS}, got {t.scheduler!r}")
    if t.save_dtype is not None and t.save_dtype not in DTYPE_NAMES:
        raise ConfigError(
            f"train.save_dtype {t.save_dtype!r} unknown; use one of {sorted(DTYPE_NAMES)} or null"
        )
    if not d.train_files:
        raise ConfigError("data.train_files is empty: list the JSONL files to train on")
    if min(t.batch_size, t.grad_accum, t.max_steps) < 1:
        raise ConfigError("batch_size, grad_accum and max_steps must be >= 1")
    if not 0.0 <= d.eval_fraction < 1.0:
        raise ConfigError(f"data.eval_fraction must be in [0, 1), got {d.eval_fraction}")


def _random_llm(m: Any, folder: Path, seed: int) -> str:
    """Write a randomly initialised LLM (the source's tokenizer and config + overrides) to `folder`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from skyeye.modeling.llm import resolve_llm_path

    path = resolve_llm_path(m.llm)
    if not (folder / "config.json").is_file():
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        for key, value in m.llm_config_overrides.items():
            if not hasattr(config, key):
                raise ConfigError(
                    f"model.llm_config_overrides: {type(config).__name__} has no field {key!r}"
                )
            setattr(config, key, value)
        # Draw from a forked RNG: the caller's random state must not depend on whether the
        # folder existed already, or a resumed run would initialise the rest of the model
        # (tower, projector, mask head, LoRA) differently from the run it continues.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            llm = AutoModelForCausalLM.from_config(config)
        with atomic_dir(folder) as tmp:  # a killed run never leaves a half-written base-llm/
            llm.save_pretrained(tmp, safe_serialization=True)
            AutoTokenizer.from_pretrained(path, trust_remote_code=False).save_pretrained(tmp)
    return str(folder.resolve())


def load_or_build(recipe: Recipe) -> tuple[nn.Module, SkyEyeProcessor]:
    """The starting model (float32, adapters as stored; the LLM in 4 bits with QLoRA) and its
    processor.

    With `llm_random_init` the base LLM is written once to OUTPUT/base-llm; in a multi-process
    run call this on the main process first, then on the others (they read that folder).
    """
    from skyeye.modeling.builder import build_model
    from skyeye.modeling.model import SkyEyeForConditionalGeneration
    from skyeye.modeling.vision import get_vision_config

    m, t = recipe.model, recipe.train
    torch.manual_seed(t.seed)
    quantization = _quantization(torch_dtype(m.dtype)) if m.qlora else None
    if m.model is not None:
        from peft import PeftModel

        from skyeye.bundled import resolve_model_folder
        from skyeye.modeling.checkpoint import ADAPTER_FOLDER

        folder = resolve_model_folder(m.model)
        # QLoRA: transformers quantises the LLM while loading it (the rest stays float32).
        model = SkyEyeForConditionalGeneration.from_pretrained(
            folder, load_adapter=False, quantization_config=quantization
        )
        processor = SkyEyeProcessor.from_pretrained(folder)
        if quantization is not None:
            _prepare_kbit(model)
        if (folder / ADAPTER_FOLDER / "adapter_config.json").is_file():
            # A stored adapter keeps training in stage 2 (on the 4-bit LLM with QLoRA) and stays
            # as it is in stage 1.
            model.language_model = PeftModel.from_pretrained(
                model.language_model, str(folder / ADAPTER_FOLDER), is_trainable=t.stage == 2
            )
    else:
        llm = m.llm
        if m.llm_random_init:
            llm = _random_llm(m, Path(t.output_dir) / "base-llm", t.seed)
        model, processor = build_model(
            vision_config=get_vision_config(m.vision),
            llm_source=llm,
            image_size=m.image_size,
            use_mask_head=m.use_mask_head,
            mask_head_hidden_size=m.mask_head_hidden_size,
            projector_type=m.projector_type,
            token_pooling=m.token_pooling,
        )
        if quantization is not None:
            _quantize_built_llm(model, quantization)
    if m.sar_wavelength is not None:
        processor.image_processor.sar_wavelength = float(m.sar_wavelength)
    if not m.qlora and m.dtype != "float32":
        model.language_model.to(torch_dtype(m.dtype))
    return model, processor


def _quantization(compute_dtype: torch.dtype) -> Any:
    """QLoRA's 4-bit NF4 setting (bitsandbytes) with double quantisation."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def _prepare_kbit(model: nn.Module) -> None:
    from peft import prepare_model_for_kbit_training

    model.language_model = prepare_model_for_kbit_training(
        model.language_model, use_gradient_checkpointing=False
    )


def _quantize_built_llm(model: nn.Module, quantization: Any) -> None:
    """Replace a freshly built model's LLM by a 4-bit copy, keeping SkyEye's added token rows."""
    from skyeye.modeling.checkpoint import load_language_model_of
    from skyeye.modeling.pretrained import quantized_device_map

    old = model.language_model
    llm4 = load_language_model_of(
        model.config,
        None,
        quantization_config=quantization,
        device_map=quantized_device_map(),
        dtype=quantization.bnb_4bit_compute_dtype,
    )
    base = model.config.text_base_vocab_size
    if base is not None:  # the new rows start as the builder drew them
        with torch.no_grad():
            emb = llm4.get_input_embeddings().weight
            emb[base:] = old.get_input_embeddings().weight[base:].to(emb.device, emb.dtype)
    model.language_model = llm4
    _prepare_kbit(model)
    del old


def _linear_names(llm: nn.Module) -> set[str]:
    names = set()
    for name, module in llm.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
            names.add(name.rsplit(".", 1)[-1])
    return names


def _embedding_name(llm: nn.Module) -> str:
    target = llm.get_input_embeddings()
    for name, module in llm.named_modules():
        if module is target:
            return name.rsplit(".", 1)[-1]
    raise ConfigError("cannot find the LLM's input embedding module")


def added_token_ids(model: nn.Module, processor: SkyEyeProcessor) -> list[int]:
    """Ids of the tokens SkyEye added to the LLM's vocabulary ([SEG], <p>, </p>), whose rows train.

    The image token is left out: image positions are filled with image features, never looked up.
    """
    base = model.config.text_base_vocab_size
    if base is None:
        return []
    return [i for i in range(base, len(processor.tokenizer)) if i != processor.image_token_id]


def configure_trainable(
    model: nn.Module, recipe: Recipe, new_token_ids: list[int] | None = None
) -> dict[str, int]:
    """Freeze / unfreeze by stage and add LoRA (stage 2); returns trainable counts per part.

    `new_token_ids` (see `added_token_ids`) are the embedding rows trained in stage 2.
    """
    from peft import LoraConfig, get_peft_model

    t, lo = recipe.train, recipe.lora
    for p in model.parameters():
        p.requires_grad_(False)
    if t.stage == 2 and not hasattr(model.language_model, "peft_config"):
        llm = model.language_model
        available = _linear_names(llm)
        missing = [name for name in lo.lora_targets if name not in available]
        if missing or not lo.lora_targets:
            raise ConfigError(
                f"LoRA target(s) {missing or lo.lora_targets} are not linear layers of the LLM "
                f"({type(llm).__name__}); its linear layers are {sorted(available)}: set lora.lora_targets"
            )
        extra: dict[str, Any] = {}
        if new_token_ids and lo.new_token_rows == "trainable_tokens":
            extra["trainable_token_indices"] = {_embedding_name(llm): list(new_token_ids)}
        elif new_token_ids and lo.new_token_rows == "modules_to_save":
            head = llm.get_output_embeddings()
            names = [_embedding_name(llm)]
            if head is not None and not model.config.text_config.tie_word_embeddings:
                names += [n.rsplit(".", 1)[-1] for n, mod in llm.named_modules() if mod is head]
            extra["modules_to_save"] = names
        lora = LoraConfig(
            r=lo.lora_r,
            lora_alpha=lo.lora_alpha,
            lora_dropout=lo.lora_dropout,
            target_modules=list(lo.lora_targets),
            task_type="CAUSAL_LM",
            **extra,
        )
        model.language_model = get_peft_model(llm, lora)
    elif t.stage == 2:
        # A loaded trainable adapter: re-enable exactly its own weights.
        for name, p in model.language_model.named_parameters():
            if "lora_" in name or "trainable_tokens" in name or "modules_to_save" in name:
                p.requires_grad_(True)
    if t.train_projector:
        model.projector.requires_grad_(True)
    if t.train_vision_tower:
        model.vision_tower.requires_grad_(True)
    if t.stage == 2 and t.train_mask_head and model.mask_head is not None:
        model.mask_head.requires_grad_(True)
    if t.gradient_checkpointing:
        # transformers' API on the whole model: the LLM's decoder layers and the tower's blocks.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.language_model.config.use_cache = False
    return trainable_counts(model)


def trainable_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameter counts by part (vision_tower, projector, language_model, mask_head)."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        part = name.split(".", 1)[0]
        counts.setdefault(part, 0)
        if p.requires_grad:
            counts[part] += p.numel()
    counts["total"] = sum(v for k, v in counts.items())
    return counts
