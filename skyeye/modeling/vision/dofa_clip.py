"""DOFA-CLIP trunk (GeoLB open_clip checkpoints): SigLIP-style ViT, no CLS, attention pool."""

from __future__ import annotations

from skyeye.modeling.vision.configuration import SkyEyeVisionConfig
from skyeye.modeling.vision.vit import DofaViT


class DofaClipTrunk(DofaViT):
    """Keys: ``pos_embed``, ``patch_embed.*``, ``blocks.N.*``, ``norm.*``, ``attn_pool.*``.

    Matches the published ``GeoLB_VisionTransformer`` (timm VisionTransformer, class_token=False,
    global_pool='map', head and fc_norm removed, DOFA patch embedding with padding 0).
    """

    def __init__(self, config: SkyEyeVisionConfig) -> None:
        if config.family != "dofa_clip":
            raise ValueError(f"DofaClipTrunk needs family 'dofa_clip', got {config.family!r}")
        if config.num_classes:
            raise ValueError("DOFA-CLIP trunks have no classification head; set num_classes=0")
        super().__init__(config)
