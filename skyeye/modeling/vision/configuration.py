"""Configuration of the SkyEye vision tower (DOFA-CLIP and DOFA v1 families)."""

from __future__ import annotations

from transformers import PretrainedConfig

FAMILIES = ("dofa_clip", "dofa_v1")
GLOBAL_POOLS = {"dofa_clip": ("map",), "dofa_v1": ("avg", "token")}
ACTIVATIONS = ("gelu", "gelu_tanh")


class SkyEyeVisionConfig(PretrainedConfig):
    """Shape and behaviour of a DOFA vision tower.

    Fields:
        family: ``"dofa_clip"`` (SigLIP-style ViT, no CLS token, attention-pool head, as in
            the DOFA-CLIP / GeoLB open_clip checkpoints) or ``"dofa_v1"`` (torchgeo's DOFA: ViT
            with a CLS token and an avg/token pool head).
        image_size: square input size in pixels that ``pos_embed`` was trained for; other sizes
            work through bicubic interpolation of the position embeddings.
        patch_size: DOFA kernel size k (the conv stride is also k).
        hidden_size: transformer width D.
        num_hidden_layers: number of transformer blocks.
        num_attention_heads: heads per block (cannot be read from weights; must follow the
            checkpoint).
        mlp_ratio: MLP hidden width / D. timm computes the hidden width as ``int(D * ratio)``,
            so SigLIP so400m uses 3.7362 (-> 4304).
        embed_padding: zero padding of the DOFA conv: 0 in DOFA-CLIP, 1 in DOFA v1 (torchgeo).
            It must follow the checkpoint.
        wave_dim: width of the sin-cos wavelength code and of the weight generator (128).
        num_weight_tokens: learned weight tokens of the generator (128 in every release).
        class_token: prepend a learned CLS token (DOFA v1). It is never returned as a feature.
        global_pool: pooled embedding: ``"map"`` attention pool (DOFA-CLIP), ``"avg"`` mean of
            patch tokens then ``fc_norm`` or ``"token"`` normed CLS token (DOFA v1).
        final_norm: the checkpoint has a final norm (``norm`` for map/token, ``fc_norm`` for avg).
            torchgeo's MAE-pretrained DOFA v1 files ship without one.
        num_classes: width of a DOFA v1 classification ``head`` (0 = none).
        layer_norm_eps: LayerNorm epsilon (1e-6 in every DOFA release).
        act: MLP activation: ``"gelu"`` (exact erf GELU: torchgeo DOFA and the published
            DOFA-CLIP trunks, which build timm's VisionTransformer with its default activation)
            or ``"gelu_tanh"`` (original big_vision SigLIP).
        feature_layer: which block output ``tower(...)`` returns by default: -1 = last block,
            -2 = penultimate, ...; non-negative values index blocks from 0.
        feature_norm: apply the final ``norm`` to the features when the last block is selected
            (only meaningful for ``map``/``token`` pools, where that norm exists).
    """

    model_type = "skyeye_vision"

    family: str = "dofa_clip"
    image_size: int = 128
    patch_size: int = 8
    hidden_size: int = 256
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    mlp_ratio: float = 4.0
    embed_padding: int = 0
    wave_dim: int = 128
    num_weight_tokens: int = 128
    class_token: bool = False
    global_pool: str = "map"
    final_norm: bool = True
    num_classes: int = 0
    layer_norm_eps: float = 1e-6
    act: str = "gelu"
    feature_layer: int = -1
    feature_norm: bool = False

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        self.validate_vision()

    def validate_vision(self) -> None:
        """Raise ``ValueError`` naming the bad field and the fix."""
        if self.family not in FAMILIES:
            raise ValueError(f"family={self.family!r} is unknown; use one of {FAMILIES}")
        pools = GLOBAL_POOLS[self.family]
        if self.global_pool not in pools:
            raise ValueError(
                f"global_pool={self.global_pool!r} does not exist for family {self.family!r}; "
                f"use one of {pools}"
            )
        if self.family == "dofa_clip" and self.class_token:
            raise ValueError("DOFA-CLIP trunks have no CLS token; set class_token=False")
        if self.family == "dofa_v1" and not self.class_token:
            raise ValueError(
                "DOFA v1 (torchgeo) trunks always have a CLS token; set class_token=True"
            )
        if self.act not in ACTIVATIONS:
            raise ValueError(f"act={self.act!r} is unknown; use one of {ACTIVATIONS}")
        for name in ("image_size", "patch_size", "hidden_size", "num_hidden_layers"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_attention_heads <= 0 or self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.image_size < self.patch_size:
            raise ValueError(
                f"image_size={self.image_size} is smaller than patch_size={self.patch_size}"
            )
        if self.embed_padding not in (0, 1):
            raise ValueError(
                f"embed_padding must be 0 (DOFA-CLIP) or 1 (DOFA v1), got {self.embed_padding}"
            )
        if self.wave_dim % 2:
            raise ValueError(f"wave_dim must be even (sin-cos code), got {self.wave_dim}")
        depth = self.num_hidden_layers
        if not -depth <= self.feature_layer < depth:
            raise ValueError(
                f"feature_layer={self.feature_layer} is out of range for {depth} layers "
                f"(use -{depth}..{depth - 1})"
            )
        if self.feature_norm and not (self.final_norm and self.global_pool in ("map", "token")):
            raise ValueError(
                "feature_norm=True needs a final token norm, which only exists with "
                "global_pool 'map' or 'token' and final_norm=True; set feature_norm=False"
            )

    @property
    def grid_size(self) -> int:
        """Patches per side at ``image_size``."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens returned per image at ``image_size`` (a CLS token is never returned)."""
        return self.grid_size**2

    @property
    def mlp_hidden_size(self) -> int:
        """MLP width as timm computes it."""
        return int(self.hidden_size * self.mlp_ratio)
