"""The SkyEye model folder format: what is written where, and the strict reading of it.

A model folder holds:

- `config.json` (`SkyEyeConfig`), the tokenizer and processor files;
- `model.safetensors`: the vision tower, projector and mask head (keys `vision_tower.*`,
  `projector.*`, `mask_head.*`) and, where the tokenizer gained tokens the base LLM lacks, their
  embedding rows (`added_tokens.input_embeddings`, `added_tokens.output_embeddings`);
- the LLM, either embedded as a standard transformers folder in `llm/` (`config.llm_embedded`),
  or referenced by `config.llm_source` (an embedded LLM name, folder or hub id);
- optionally `adapter/`, a standard PEFT LoRA adapter for the LLM.

Every key is checked on load: a missing or unexpected key is a `CheckpointKeyError` that names
it. These functions take any model with SkyEye's parts (`config`, `language_model`, the others:
typed `Any`, so this module need not import the model that imports it);
`SkyEyePreTrainedModel.from_pretrained` / `save_pretrained` put them together.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from skyeye.atomic import atomic_path
from skyeye.errors import CheckpointKeyError
from skyeye.modeling.configuration import SkyEyeConfig
from skyeye.modeling.llm import load_language_model

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
LLM_FOLDER = "llm"
ADAPTER_FOLDER = "adapter"
LLM_PREFIX = "language_model."
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


def is_peft(module: Any) -> bool:
    """True for an LLM wrapped by PEFT (adapters attached, not merged)."""
    return hasattr(module, "peft_config")


def base_llm(llm: Any) -> Any:
    """The transformers model under a PEFT wrapper (or `llm` itself)."""
    return llm.get_base_model() if is_peft(llm) else llm


def own_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Non-LLM weights of a SkyEye model (vision tower, projector, mask head)."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith(LLM_PREFIX)}


def added_token_rows(llm: Any, config: SkyEyeConfig) -> dict[str, torch.Tensor]:
    """The embedding rows of the tokens SkyEye added to the referenced LLM's vocabulary."""
    base = config.text_base_vocab_size
    if base is None:
        return {}
    llm = base_llm(llm)
    rows = {ADDED_INPUT: llm.get_input_embeddings().weight[base:]}
    output = llm.get_output_embeddings()
    if output is not None and not getattr(config.text_config, "tie_word_embeddings", False):
        rows[ADDED_OUTPUT] = output.weight[base:]
    return rows


def save_model(
    model: Any,
    folder: str | Path,
    *,
    processor: Any | None = None,
    dtype: torch.dtype | None = None,
    max_shard_size: int | str | None = None,
) -> Path:
    """Write `model` (and optionally its processor) as a model folder.

    `dtype` stores the floating-point weights of `model.safetensors` in another precision (e.g.
    bfloat16 to halve a shipped model); they are cast back to the model's dtype on load.
    `max_shard_size` applies to an embedded LLM (`llm/`), saved by transformers.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    config.architectures = [type(model).__name__]
    if config.llm_embedded and is_peft(model.language_model):
        raise ValueError(
            "cannot embed an LLM that still carries LoRA adapters; merge them first "
            "(python -m finetune.merge) or save with llm_embedded=False"
        )
    if not config.llm_embedded and config.llm_source is None:
        raise ValueError("config.llm_source must name the LLM when it is not embedded")
    state = own_state_dict(model)
    if not config.llm_embedded:
        state.update(added_token_rows(model.language_model, config))
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    if is_peft(model.language_model):
        # The resized embedding's added rows already live in model.safetensors and the trained
        # token rows in the adapter's trainable tokens: keep peft from copying the whole table.
        model.language_model.save_pretrained(
            str(folder / ADAPTER_FOLDER), save_embedding_layers=False
        )
        base = None if config.llm_embedded else config.llm_source
        _tidy_adapter_config(folder / ADAPTER_FOLDER / "adapter_config.json", base)
        # peft's card template ("[More Information Needed]" throughout, the base LLM's cache
        # path): the folder's own README.md is the card.
        (folder / ADAPTER_FOLDER / "README.md").unlink(missing_ok=True)
    if config.llm_embedded:
        extra = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
        base_llm(model.language_model).save_pretrained(str(folder / LLM_FOLDER), **extra)
    config.save_pretrained(str(folder))
    if processor is not None:
        processor.save_pretrained(folder)
    return folder


def _tidy_adapter_config(path: Path, base: str | None) -> None:
    """Make the adapter config the same on every machine and every run.

    peft records the base LLM's local path (the user's cache: a machine path in a shipped
    folder); it becomes ``base`` (the config's LLM name; None for an LLM in the folder). peft
    keeps ``target_modules`` as a set and saves it in the set's order, which follows Python's
    per-process string hashing: two runs of one recipe wrote byte-identical adapter weights with
    configs that differed in this order alone.
    """
    conf = json.loads(path.read_text(encoding="utf-8"))
    conf["base_model_name_or_path"] = base
    if isinstance(conf.get("target_modules"), list):
        conf["target_modules"] = sorted(conf["target_modules"])
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_language_model_of(
    config: SkyEyeConfig,
    folder: Path | None,
    *,
    cache_dir: str | Path | None = None,
    **from_pretrained: Any,
) -> PreTrainedModel:
    """The LLM of a model folder (its `llm/` or `config.llm_source`), grown to SkyEye's vocabulary.

    `from_pretrained` (`dtype`, `device_map`, `quantization_config`, ...) goes to the LLM's own
    `from_pretrained`: the LLM is quantised and placed by transformers itself.
    """
    if config.llm_embedded:
        if folder is None:
            raise ValueError("an embedded LLM (config.llm_embedded) is read from its model folder")
        source, cache_dir = str(folder / LLM_FOLDER), None
    elif config.llm_source is None:
        raise ValueError(f"{folder}/config.json names no llm_source and embeds no LLM")
    else:
        source = config.llm_source
    llm = load_language_model(source, cache_dir=cache_dir, **from_pretrained)
    rows = next(llm.get_input_embeddings().parameters()).shape[0]
    vocab = getattr(config.text_config, "vocab_size", None)
    if config.text_base_vocab_size is not None and vocab is not None and rows != vocab:
        llm.resize_token_embeddings(vocab, mean_resizing=False)
    return llm


def load_own_weights(model: Any, folder: Path) -> None:
    """Load `model.safetensors` into `model` strictly, and the added token rows into its LLM.

    Values are copied into the model's own tensors, so they take the model's dtype and device.
    """
    path = folder / WEIGHTS_NAME
    state = load_file(str(path))
    added = {k: state.pop(k) for k in (ADDED_INPUT, ADDED_OUTPUT) if k in state}
    # A backbone read from a full folder leaves its head's weights (`mask_head.*`) to the class on
    # top; every other key is still checked.
    head = tuple(getattr(model, "_head_key_prefixes", ()))
    state = {k: v for k, v in state.items() if not (head and k.startswith(head))}
    check_keys(set(own_state_dict(model)), set(state), str(path))
    model.load_state_dict(state, strict=False)
    if not added:
        return
    base = model.config.text_base_vocab_size
    if base is None:
        raise CheckpointKeyError(
            str(path), [], list(added), hint="config.json has no text_base_vocab_size for them."
        )
    llm = base_llm(model.language_model)
    targets = {ADDED_INPUT: llm.get_input_embeddings().weight}
    if ADDED_OUTPUT in added:
        targets[ADDED_OUTPUT] = llm.get_output_embeddings().weight
    with torch.no_grad():
        for key, weight in targets.items():
            weight[base:] = added[key].to(weight.device, weight.dtype)


def attach_adapter(
    model: Any, folder: Path, *, merge: bool = False, is_trainable: bool = False
) -> bool:
    """Wrap the LLM with the folder's LoRA adapter (or merge it into the weights).

    Returns False when the folder has no adapter.
    """
    adapter = folder / ADAPTER_FOLDER
    if not (adapter / "adapter_config.json").is_file():
        return False
    from peft import PeftModel

    llm = PeftModel.from_pretrained(model.language_model, str(adapter), is_trainable=is_trainable)
    model.language_model = llm.merge_and_unload() if merge else llm
    return True
