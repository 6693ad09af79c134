"""Named vision tower shapes (plain dict registry)."""

from __future__ import annotations

from typing import Any

from skyeye.modeling.vision.configuration import SkyEyeVisionConfig

_CLIP = {"family": "dofa_clip", "class_token": False, "global_pool": "map", "embed_padding": 0}
_V1 = {"family": "dofa_v1", "class_token": True, "global_pool": "avg", "embed_padding": 1}

VISION_CONFIGS: dict[str, dict[str, Any]] = {
    # earthflow/GeoLB-ViT-14-SigLIP-so400m-384-EO: timm `dofa_vit_so400m_patch14_siglip_384`
    # (27 x 1152, 16 heads, mlp_ratio 3.7362 -> 4304, 27x27 = 729 tokens).
    "dofa-clip-so400m-384": {
        **_CLIP,
        "image_size": 384,
        "patch_size": 14,
        "hidden_size": 1152,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "mlp_ratio": 3.7362,
    },
    # GeoLB-ViT-B-16-SigLIP: timm `dofa_vit_base_patch16_siglip_224` (196 tokens).
    "dofa-clip-b16-224": {
        **_CLIP,
        "image_size": 224,
        "patch_size": 16,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "mlp_ratio": 4.0,
    },
    # torchgeo dofa_base_patch16_224 / dofa_large_patch16_224 (MAE weights: no final norm).
    "dofa-v1-base": {
        **_V1,
        "image_size": 224,
        "patch_size": 16,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "mlp_ratio": 4.0,
    },
    "dofa-v1-large": {
        **_V1,
        "image_size": 224,
        "patch_size": 16,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "mlp_ratio": 4.0,
    },
    # The tower trained by this project for the embedded CPU model (16 x 16 = 256 tokens).
    "dofa-clip-tiny": {
        **_CLIP,
        "image_size": 128,
        "patch_size": 8,
        "hidden_size": 256,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "mlp_ratio": 4.0,
    },
    # Unit tests only: 16 px, 4 x 4 = 16 tokens.
    "tiny-test": {
        **_CLIP,
        "image_size": 16,
        "patch_size": 4,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "mlp_ratio": 4.0,
    },
}


def list_vision_configs() -> list[str]:
    """Names accepted by :func:`get_vision_config`."""
    return sorted(VISION_CONFIGS)


def get_vision_config(name: str, **overrides: Any) -> SkyEyeVisionConfig:
    """Build the named config; ``overrides`` replace single fields (e.g. ``feature_layer=-2``)."""
    if name not in VISION_CONFIGS:
        raise KeyError(f"unknown vision config {name!r}; known: {', '.join(list_vision_configs())}")
    return SkyEyeVisionConfig(**{**VISION_CONFIGS[name], **overrides})
