"""Reading trunk state dicts, strict loading with named key errors, and config inference."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from skyeye.errors import CheckpointKeyError
from skyeye.modeling.vision.configuration import SkyEyeVisionConfig

logger = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
# Default head width used only when a checkpoint carries no head count (ViT-S/B/L all use 64).
DEFAULT_HEAD_DIM = 64


def _preview(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.pth/.pt/.bin`` file via
    ``torch.load(weights_only=True)`` (a single ``model``/``state_dict`` wrapper is unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix not in TORCH_SUFFIXES:
        raise ValueError(
            f"{path} has an unknown checkpoint suffix {path.suffix!r}; use .safetensors "
            f"or one of {TORCH_SUFFIXES}"
        )
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and not any(isinstance(v, Tensor) for v in obj.values()):
        wrapped = [k for k in ("model", "state_dict") if isinstance(obj.get(k), Mapping)]
        if len(wrapped) == 1:
            obj = obj[wrapped[0]]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return dict(obj)


def load_strict(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Copy ``state`` into ``module``; any missing/unexpected key or shape mismatch is an error."""
    expected = module.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        raise CheckpointKeyError(source, missing, unexpected)
    bad = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise ValueError(f"checkpoint {source} has {len(bad)} shape mismatch(es): {_preview(bad)}")
    module.load_state_dict(dict(state), strict=True)


def _mlp_ratio(mlp_hidden: int, width: int) -> float:
    """A ratio for which timm's ``int(width * ratio)`` gives back ``mlp_hidden`` exactly."""
    ratio = mlp_hidden / width
    if int(width * ratio) != mlp_hidden:
        ratio = (mlp_hidden + 0.25) / width
    return ratio


def infer_trunk_config(
    trunk_state: Mapping[str, Tensor], *, num_heads: int | None = None
) -> SkyEyeVisionConfig:
    """Config of a DOFA trunk state dict (keys without ``trunk.``), read from tensor shapes.

    The family comes from the layout (``cls_token`` -> DOFA v1, ``attn_pool`` -> DOFA-CLIP),
    the padding from the family. Head counts are not stored in weights: pass ``num_heads``,
    otherwise ``hidden_size / 64`` is assumed (right for ViT-S/B/L, wrong for so400m).
    """
    keys = set(trunk_state)
    for key in ("pos_embed", "patch_embed.fclayer.w1.weight", "blocks.0.mlp.fc1.weight"):
        if key not in keys:
            raise ValueError(f"not a DOFA trunk state dict: {key!r} is missing")
    if "cls_token" in keys:
        family = "dofa_v1"
    elif any(k.startswith("attn_pool.") for k in keys):
        family = "dofa_clip"
    else:
        raise ValueError(
            "cannot tell the DOFA family: no 'cls_token' (DOFA v1) and no 'attn_pool.*' "
            "(DOFA-CLIP); pass config= explicitly"
        )
    width = trunk_state["pos_embed"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in keys if (m := re.match(r"blocks\.(\d+)\.", k)))
    mlp_hidden = trunk_state["blocks.0.mlp.fc1.weight"].shape[0]
    kernel_numel = trunk_state["patch_embed.weight_generator.fc_weight.weight"].shape[0]
    patch = math.isqrt(kernel_numel // width)
    if patch * patch * width != kernel_numel:
        raise ValueError(f"fc_weight rows {kernel_numel} are not k*k*{width} for any integer k")
    prefix = 1 if family == "dofa_v1" else 0
    grid = math.isqrt(trunk_state["pos_embed"].shape[1] - prefix)
    if grid * grid + prefix != trunk_state["pos_embed"].shape[1]:
        raise ValueError(f"pos_embed {tuple(trunk_state['pos_embed'].shape)} is not a square grid")
    if num_heads is None:
        if width % DEFAULT_HEAD_DIM:
            raise ValueError(
                f"cannot guess the head count for width {width}; pass config= or num_heads"
            )
        num_heads = width // DEFAULT_HEAD_DIM
        logger.warning("head count not in checkpoint: assuming %d heads (64 per head)", num_heads)
    fields: dict[str, Any] = {
        "family": family,
        "image_size": grid * patch,
        "patch_size": patch,
        "hidden_size": width,
        "num_hidden_layers": depth,
        "num_attention_heads": num_heads,
        "mlp_ratio": _mlp_ratio(mlp_hidden, width),
        "wave_dim": trunk_state["patch_embed.fclayer.w1.weight"].shape[0],
        "num_weight_tokens": trunk_state["patch_embed.weight_generator.weight_tokens"].shape[0],
        "act": "gelu",
    }
    if family == "dofa_clip":
        fields |= {"embed_padding": 0, "class_token": False, "global_pool": "map"}
        fields["final_norm"] = "norm.weight" in keys
    else:
        fields |= {"embed_padding": 1, "class_token": True}
        fields["global_pool"] = "token" if "norm.weight" in keys else "avg"
        fields["final_norm"] = "norm.weight" in keys or "fc_norm.weight" in keys
        fields["num_classes"] = trunk_state["head.weight"].shape[0] if "head.weight" in keys else 0
    return SkyEyeVisionConfig(**fields)
