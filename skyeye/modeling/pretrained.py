"""`SkyEyePreTrainedModel`: SkyEye as a transformers `PreTrainedModel`, with its own folder layout.

transformers' `from_pretrained` reads one state dict holding every weight of the model. A SkyEye
folder does not: the LLM is usually *referenced* (`config.llm_source`, so a shipped folder holds
megabytes, not the LLM's gigabytes) and only the embedding rows of the tokens SkyEye added are
stored; the LoRA adapter is a standard PEFT folder in `adapter/`. So `from_pretrained` is
overridden: the LLM is loaded by transformers itself (`AutoModelForCausalLM.from_pretrained` with
the caller's `dtype`, `device_map`, `quantization_config`), then the vision tower, projector and
mask head are read strictly from `model.safetensors` (`skyeye.modeling.checkpoint`). Everything
else is transformers' machinery: the Auto classes, `_no_split_modules`, gradient checkpointing
(`gradient_checkpointing_enable()` reaches the LLM's decoder layers and the vision tower's
blocks), `push_to_hub`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from transformers import PreTrainedModel

from skyeye.bundled import resolve_model_folder
from skyeye.modeling import checkpoint
from skyeye.modeling.configuration import SkyEyeConfig
from skyeye.modeling.folder_check import check_model_folder

logger = logging.getLogger(__name__)

#: transformers' `from_pretrained` arguments that have no effect on a SkyEye folder (the Auto
#: classes pass some of them on their own). Remote code is never run, whatever they say.
_IGNORED_KWARGS = frozenset(
    {
        "_from_auto",
        "_commit_hash",
        "adapter_kwargs",
        "code_revision",
        "force_download",
        "local_files_only",
        "low_cpu_mem_usage",
        "proxies",
        "trust_remote_code",
        "use_safetensors",
    }
)
_Model = TypeVar("_Model", bound="SkyEyePreTrainedModel")
#: `device_map` strategies that transformers resolves over the devices it finds.
_DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def quantized_device_map() -> dict[str, Any]:
    """Where a quantised LLM goes when the caller names no device: this process's GPU, or the CPU
    (bitsandbytes quantises on the CPU too)."""
    return {"": torch.cuda.current_device() if torch.cuda.is_available() else "cpu"}


def _resolve_dtype(dtype: Any, config: SkyEyeConfig) -> torch.dtype | None:
    """None (float32 weights), "auto" (the LLM's own dtype), a name or a torch dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        dtype = getattr(config.text_config, "dtype", None) or torch.float32
        if isinstance(dtype, torch.dtype):
            return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch dtype (e.g. float32, bfloat16, 'auto')")
    return resolved


def _llm_device_map(device_map: Any, device: Any) -> Any:
    """The LLM's `device_map` from the caller's (keys may carry the `language_model.` prefix)."""
    if device_map is not None and device is not None:
        raise ValueError("give device or device_map, not both")
    if device is not None:  # SkyEye's shorthand: the whole model on one device
        return None if torch.device(device).type == "cpu" else {"": torch.device(device)}
    if device_map is None or isinstance(device_map, str) and device_map in _DEVICE_MAP_STRATEGIES:
        return device_map
    if not isinstance(device_map, dict):
        return {"": device_map}  # "cpu", "cuda:0", 0, torch.device(...)
    llm_map = {}
    for key, value in device_map.items():
        if key in ("", "language_model"):
            llm_map[""] = value
        elif key.startswith(checkpoint.LLM_PREFIX):
            llm_map[key.removeprefix(checkpoint.LLM_PREFIX)] = value
        else:
            raise ValueError(
                f"device_map key {key!r}: SkyEye places the vision tower, projector and mask head "
                "with the LLM's input embeddings; give keys '' or 'language_model.*' only"
            )
    return llm_map


class SkyEyePreTrainedModel(PreTrainedModel):
    """Base class of SkyEye models: config class, loading, saving and transformers' switches.

    Subclasses (`SkyEyeModel`, the backbone; `SkyEyeForConditionalGeneration` on top) own a
    `language_model` (any transformers causal LM, optionally PEFT-wrapped) and other children
    (vision tower, projector, mask head) whose weights live in `model.safetensors`.
    """

    config_class = SkyEyeConfig
    # As Llava: `base_model` of the conditional-generation class is its backbone `model`
    # (`SkyEyeModel`), that of the backbone itself.
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ["image", "text"]
    supports_gradient_checkpointing = True
    # timm's ViT block; `post_init` adds the LLM's own (e.g. LlamaDecoderLayer) from its child.
    _no_split_modules = ["Block"]
    _skip_keys_device_placement = ["past_key_values"]
    # Attention is computed by the LLM and the tower; the composite model supports what they do.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    #: the causal LM (a transformers model, or a PEFT model wrapping one)
    language_model: Any
    #: prefixes of folder keys that belong to a class on top, skipped when loading this one
    _head_key_prefixes: tuple[str, ...] = ()

    def _init_weights(self, module: nn.Module) -> None:
        """Leave weights as they are.

        The vision tower, projector and mask head are initialised by their constructors (timm's
        ViT init, torch's defaults) under the caller's seed, which makes `build_model` reproducible;
        re-initialising here would draw other numbers. The LLM's modules are dispatched to the
        LLM's own `_init_weights` by transformers, and an LLM passed in already loaded is marked
        initialised, so a loaded weight is never overwritten.
        """

    @staticmethod
    def _mark_initialised(module: nn.Module) -> None:
        for child in module.modules():
            # setattr: mypy types a Module's unknown attributes as Tensor | Module
            setattr(child, "_is_hf_initialized", True)  # noqa: B010

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.language_model.get_output_embeddings()

    # ------------------------------------------------------------------ load
    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls: type[_Model],
        pretrained_model_name_or_path: str | Path,
        *model_args: Any,
        config: SkyEyeConfig | None = None,
        dtype: Any = None,
        device_map: Any = None,
        quantization_config: Any = None,
        device: str | torch.device | None = None,
        attn_implementation: str | None = None,
        cache_dir: str | Path | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        subfolder: str = "",
        load_adapter: bool = True,
        merge_adapter: bool = False,
        **kwargs: Any,
    ) -> _Model:
        """Load a SkyEye folder, bundled model (`skyeye-tiny`) or hub id.

        Args:
            dtype: weights' dtype (`torch.bfloat16`, "bfloat16", "auto" = the LLM's own); default
                float32. With `quantization_config`, the dtype of what stays unquantised.
            device_map: where the LLM goes (transformers' `device_map`: "auto", "cpu", a device,
                or a dict over `language_model.*` modules); the vision tower, projector and mask
                head follow the LLM's input embeddings.
            quantization_config: e.g. `BitsAndBytesConfig(load_in_4bit=True)`: the LLM is
                quantised by transformers; the other parts stay in `dtype`.
            device: SkyEye's shorthand for putting the whole model on one device.
            cache_dir: where an embedded LLM (e.g. `smollm2-135m-instruct`) is converted once.
            revision / token: for a hub id.
            load_adapter: attach the LoRA adapter in `adapter/` (PEFT), if any.
            merge_adapter: merge it into the LLM's weights instead (the same outputs, and the
                plain LLM's decoding speed: an attached adapter cost ~3x on the CPU).

        Raises:
            CheckpointKeyError: `model.safetensors` lacks a key the model has, or has one it lacks.
        """
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes no positional model arguments")
        if subfolder:
            raise ValueError("a SkyEye model is a whole folder; subfolder is not supported")
        if dtype is None:
            dtype = kwargs.pop("torch_dtype", None)
        unknown = sorted(set(kwargs) - _IGNORED_KWARGS)
        if unknown:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected argument(s): {unknown}")
        folder = resolve_model_folder(pretrained_model_name_or_path, revision=revision, token=token)
        check_model_folder(folder)  # one clear line for a missing, truncated or pickled file
        if config is None:
            config = SkyEyeConfig.from_pretrained(str(folder))
        dtype = _resolve_dtype(dtype, config)
        llm_map = _llm_device_map(device_map, device)
        if quantization_config is not None and llm_map is None:
            llm_map = quantized_device_map()
        llm_kwargs: dict[str, Any] = {"dtype": dtype or torch.float32}
        if llm_map is not None:
            llm_kwargs["device_map"] = llm_map
        if quantization_config is not None:
            llm_kwargs["quantization_config"] = quantization_config
        if attn_implementation is not None:
            llm_kwargs["attn_implementation"] = attn_implementation
        llm = checkpoint.load_language_model_of(config, folder, cache_dir=cache_dir, **llm_kwargs)
        model = cls(config, llm)
        place = next(llm.get_input_embeddings().parameters()).device
        for name, child in model.named_children():
            if name != "language_model":
                child.to(device=place, dtype=dtype or torch.float32)
        checkpoint.load_own_weights(model, folder)
        if load_adapter:
            checkpoint.attach_adapter(model, folder, merge=merge_adapter)
        return model.eval()

    # ------------------------------------------------------------------ save
    def save_pretrained(  # type: ignore[override]
        self,
        save_directory: str | Path,
        *,
        processor: Any | None = None,
        dtype: torch.dtype | None = None,
        is_main_process: bool = True,
        push_to_hub: bool = False,
        max_shard_size: int | str | None = None,
        safe_serialization: bool = True,
        **push_kwargs: Any,
    ) -> Path:
        """Write the model folder (and the processor's files when `processor` is given).

        `dtype` stores `model.safetensors` in another precision (e.g. bfloat16 to halve a shipped
        model); the LLM is not copied unless `config.llm_embedded`. With `push_to_hub`, the
        folder is then uploaded to `push_kwargs["repo_id"]` (default: the folder's name).
        """
        if not safe_serialization:
            raise ValueError("SkyEye folders are written in safetensors only")
        folder = Path(save_directory)
        if is_main_process:
            checkpoint.save_model(
                self, folder, processor=processor, dtype=dtype, max_shard_size=max_shard_size
            )
        if push_to_hub and is_main_process:
            repo_id = push_kwargs.pop("repo_id", folder.name)
            self.push_to_hub(
                repo_id,
                processor=processor,
                dtype=dtype,
                max_shard_size=max_shard_size,
                **push_kwargs,
            )
        elif push_kwargs:
            raise TypeError(f"save_pretrained got unexpected argument(s): {sorted(push_kwargs)}")
        return folder

    def push_to_hub(  # type: ignore[override]
        self,
        repo_id: str,
        *,
        processor: Any | None = None,
        dtype: torch.dtype | None = None,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = None,
    ) -> str:
        """Save the model folder (with `processor`'s files) and upload it to the hub repo `repo_id`.

        The hub endpoint and token are huggingface_hub's usual settings (`HF_ENDPOINT`, `hf auth
        login`). No model card is written: `python -m skyeye.hub card` writes one from the
        evaluation report. Returns the commit URL.
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token, library_name="skyeye")
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory(prefix="skyeye-push-") as tmp:
            self.save_pretrained(
                tmp, processor=processor, dtype=dtype, max_shard_size=max_shard_size
            )
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=commit_message or "Upload SkyEye model",
                commit_description=commit_description,
                revision=revision,
                create_pr=create_pr,
            )
        return str(info.commit_url)
