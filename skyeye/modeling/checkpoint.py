"""Saving and loading SkyEye model folders (the one way to persist a model).

A model folder holds:

- `config.json` (`SkyEyeConfig`), the tokenizer and processor files;
- `model.safetensors`: the vision tower, projector and mask head (keys `vision_tower.*`,
  `projector.*`, `mask_head.*`) and, where the tokenizer gained tokens the base LLM lacks, their
  embedding rows (`added_tokens.input_embeddings`, `added_tokens.output_embeddings`);
- the LLM, either embedded as a standard transformers folder in `llm/` (`config.llm_embedded`),
  or referenced by `config.llm_source` (an embedded LLM name, folder or hub id);
- optionally `adapter/`, a standard PEFT LoRA adapter for the LLM.

Every key is checked on load: a missing or unexpected key is an error that names it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from skyeye.modeling.configuration import SkyEyeConfig
from skyeye.modeling.folder_check import check_model_folder
from skyeye.modeling.llm import load_llm
from skyeye.modeling.vision.checkpoint import CheckpointKeyError
from skyeye.models import resolve_model_folder

if TYPE_CHECKING:
    from skyeye.modeling.model import SkyEyeForConditionalGeneration

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
LLM_FOLDER = "llm"
ADAPTER_FOLDER = "adapter"
ADDED_INPUT = "added_tokens.input_embeddings"
ADDED_OUTPUT = "added_tokens.output_embeddings"


def check_keys(expected: set[str], found: set[str], source: str) -> None:
    """Raise `CheckpointKeyError` naming missing and unexpected keys."""
    if expected != found:
        raise CheckpointKeyError(
            source,
            expected - found,
            found - expected,
            hint="Was the folder written by another SkyEye config (mask head, projector type)?",
        )


def _is_peft(module: torch.nn.Module) -> bool:
    return hasattr(module, "peft_config")


def _base_llm(model: SkyEyeForConditionalGeneration) -> torch.nn.Module:
    llm = model.language_model
    return llm.get_base_model() if _is_peft(llm) else llm


def _own_state(model: SkyEyeForConditionalGeneration) -> dict[str, torch.Tensor]:
    """Non-LLM weights of the model (vision tower, projector, mask head)."""
    return {
        key: value
        for key, value in model.state_dict().items()
        if not key.startswith("language_model.")
    }


def _added_rows(model: SkyEyeForConditionalGeneration) -> dict[str, torch.Tensor]:
    base = model.config.text_base_vocab_size
    if base is None:
        return {}
    llm = _base_llm(model)
    rows = {ADDED_INPUT: llm.get_input_embeddings().weight[base:]}
    output = llm.get_output_embeddings()
    if output is not None and not model.config.text_config.tie_word_embeddings:
        rows[ADDED_OUTPUT] = output.weight[base:]
    return rows


def save_model(
    model: SkyEyeForConditionalGeneration,
    folder: str | Path,
    *,
    processor: Any | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write `model` (and optionally its processor) as a model folder.

    `dtype` stores the floating-point weights of `model.safetensors` in another precision (e.g.
    bfloat16 to halve a shipped model); they are cast back to the model's dtype on load.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    config.architectures = ["SkyEyeForConditionalGeneration"]
    state = {k: v.detach().contiguous().cpu() for k, v in _own_state(model).items()}
    if not config.llm_embedded:
        state.update({k: v.detach().contiguous().cpu() for k, v in _added_rows(model).items()})
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    if _is_peft(model.language_model):
        if config.llm_embedded:
            raise ValueError(
                "cannot embed an LLM that still carries LoRA adapters; merge them first "
                "(python -m finetune.merge) or save with llm_embedded=False"
            )
        # The resized embedding's added rows already live in model.safetensors and the trained
        # token rows in the adapter's trainable tokens: keep peft from copying the whole table.
        model.language_model.save_pretrained(
            str(folder / ADAPTER_FOLDER), save_embedding_layers=False
        )
    if config.llm_embedded:
        _base_llm(model).save_pretrained(str(folder / LLM_FOLDER), safe_serialization=True)
    elif config.llm_source is None:
        raise ValueError("config.llm_source must name the LLM when it is not embedded")
    config.save_pretrained(str(folder))
    if processor is not None:
        processor.save_pretrained(folder)
    return folder


def load_model(
    cls: type[SkyEyeForConditionalGeneration],
    name_or_path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | Path | None = None,
    load_adapter: bool = True,
    merge_adapter: bool = False,
) -> SkyEyeForConditionalGeneration:
    """Load a model folder written by `save_model` (or a preset name / hub id).

    A LoRA adapter in `adapter/` is attached as a PEFT model (to keep training it), or, with
    `merge_adapter`, merged into the LLM's weights: the same outputs, and decoding runs at the
    plain LLM's speed (an unmerged adapter cost about 3x in tokens/s on the CPU).
    """
    folder = resolve_model_folder(name_or_path)
    check_model_folder(folder)  # one clear line for a missing, truncated or pickled file
    config = SkyEyeConfig.from_pretrained(str(folder))
    if config.llm_embedded:
        llm = AutoModelForCausalLM.from_pretrained(
            str(folder / LLM_FOLDER), dtype=dtype or torch.float32, trust_remote_code=False
        )
    else:
        if config.llm_source is None:
            raise ValueError(f"{folder}/config.json names no llm_source and embeds no LLM")
        # Loading straight into the target dtype avoids a float32 copy of the LLM in memory.
        llm, _ = load_llm(config.llm_source, cache_dir=cache_dir, dtype=dtype or torch.float32)
    base_vocab = config.text_base_vocab_size
    if (
        base_vocab is not None
        and llm.get_input_embeddings().weight.shape[0] != config.text_config.vocab_size
    ):
        llm.resize_token_embeddings(config.text_config.vocab_size, mean_resizing=False)
    model = cls(config, llm)
    state = load_file(str(folder / WEIGHTS_NAME))
    added = {k: state.pop(k) for k in (ADDED_INPUT, ADDED_OUTPUT) if k in state}
    check_keys(set(_own_state(model)), set(state), str(folder / WEIGHTS_NAME))
    model.load_state_dict(state, strict=False)
    if added:
        with torch.no_grad():
            llm.get_input_embeddings().weight[base_vocab:] = added[ADDED_INPUT]
            if ADDED_OUTPUT in added:
                llm.get_output_embeddings().weight[base_vocab:] = added[ADDED_OUTPUT]
    adapter = folder / ADAPTER_FOLDER
    if load_adapter and (adapter / "adapter_config.json").is_file():
        from peft import PeftModel

        model.language_model = PeftModel.from_pretrained(model.language_model, str(adapter))
        if merge_adapter:
            model.language_model = model.language_model.merge_and_unload()
    if dtype is not None or device is not None:
        model.to(device=device, dtype=dtype)
    return model.eval()
