"""`check_model_folder`: say what is wrong with a model folder before anything loads from it.

A truncated `model.safetensors`, an adapter that is truncated or pickled, or a folder without
`config.json` otherwise surface as library tracebacks (safetensors, PEFT, pickle) or as
misleading messages. Each check reads only file headers (the safetensors header records every
tensor's byte range, so a truncated file is caught without reading the weights), except a
pickled adapter, which is opened with `torch.load(weights_only=True)` as loading would.
"""

from __future__ import annotations

import json
from pathlib import Path

from skyeye.errors import ModelFolderError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ADAPTER_FOLDER = "adapter"
LLM_FOLDER = "llm"
_RESAVE = "copy the folder again, or save it again (save_pretrained / finetune.train)"


def check_safetensors(path: Path, fix: str = _RESAVE) -> None:
    """Raise `ModelFolderError` when `path` is not a complete safetensors file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as err:  # safetensors raises its own (untyped) error for every defect
        raise ModelFolderError(
            f"{path} is damaged (truncated or not a safetensors file: {_first_line(err)}); {fix}"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:120] if text else type(err).__name__


def _check_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(
            f"{path} cannot be read as JSON ({_first_line(err)}); {_RESAVE}"
        ) from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path} is not a JSON object; {_RESAVE}")
    return data


def check_adapter(folder: Path) -> None:
    """Check `folder` (a PEFT adapter folder): its config and weights load safely."""
    _check_json(folder / "adapter_config.json")
    weights = folder / "adapter_model.safetensors"
    if weights.is_file():
        check_safetensors(weights, "train or save the adapter again")
        return
    pickled = folder / "adapter_model.bin"
    if not pickled.is_file():
        raise ModelFolderError(
            f"{folder} has adapter_config.json but no adapter_model.safetensors: copy the "
            "adapter's weights there, or remove the adapter folder to load the model without it"
        )
    import pickle

    import torch

    try:
        torch.load(str(pickled), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise ModelFolderError(
            f"{pickled} cannot be loaded safely (truncated, or a pickle that holds more than "
            f"tensors: {_first_line(err)}); save the adapter as adapter_model.safetensors "
            "(PEFT's default)"
        ) from None


def check_model_folder(folder: str | Path) -> None:
    """Raise `ModelFolderError` (one line: the file and the fix) if `folder` cannot load.

    Checks `config.json`, `model.safetensors`, an embedded `llm/` and an `adapter/`.
    """
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        content = "empty" if folder.is_dir() and not any(folder.iterdir()) else "not a model folder"
        raise ModelFolderError(
            f"{folder} has no {CONFIG_NAME} ({content}): pass a SkyEye model folder (one written "
            "by save_pretrained, e.g. a training run's model/), a bundled model such as "
            "skyeye-tiny, or a hub id"
        )
    config = _check_json(config_path)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelFolderError(f"{folder} has no {WEIGHTS_NAME}: {_RESAVE}")
    check_safetensors(weights)
    if config.get("llm_embedded"):
        llm = folder / LLM_FOLDER
        if not (llm / CONFIG_NAME).is_file():
            raise ModelFolderError(
                f"{config_path} says the LLM is embedded, but {llm} has no {CONFIG_NAME}: {_RESAVE}"
            )
        shards = sorted(llm.glob("*.safetensors"))
        if not shards:
            raise ModelFolderError(f"{llm} holds no *.safetensors weights: {_RESAVE}")
        for shard in shards:
            check_safetensors(shard)
    elif not config.get("llm_source"):
        raise ModelFolderError(
            f"{config_path} names no llm_source and the folder embeds no LLM ({folder}/llm): "
            "set llm_source to the LLM's name, folder or hub id"
        )
    adapter = folder / ADAPTER_FOLDER
    if (adapter / "adapter_config.json").is_file():
        check_adapter(adapter)
