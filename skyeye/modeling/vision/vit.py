"""Shared DOFA ViT trunk: timm's VisionTransformer with the DOFA patch embedding.

Subclassing timm keeps every block/norm/pool parameter name identical to timm's, which is what
both DOFA-CLIP (open_clip ``visual.trunk.*``) and torchgeo's DOFA checkpoints use.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from timm.layers import get_act_layer, resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from skyeye.modeling.vision.configuration import SkyEyeVisionConfig
from skyeye.modeling.vision.patch_embed import DofaPatchEmbed


class DofaViT(VisionTransformer):
    """ViT trunk whose patch embedding is generated from band wavelengths."""

    #: set with `gradient_checkpointing` by transformers' `gradient_checkpointing_enable`
    _gradient_checkpointing_func: Callable[..., Tensor]

    def __init__(self, config: SkyEyeVisionConfig) -> None:
        act = nn.GELU if config.act == "gelu" else get_act_layer("gelu_tanh")
        super().__init__(
            img_size=config.image_size,
            patch_size=config.patch_size,
            num_classes=config.num_classes,
            global_pool=config.global_pool,  # type: ignore[arg-type]  # checked by the config
            embed_dim=config.hidden_size,
            depth=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            mlp_ratio=config.mlp_ratio,
            qkv_bias=True,
            class_token=config.class_token,
            final_norm=config.final_norm,
            norm_layer=partial(nn.LayerNorm, eps=config.layer_norm_eps),
            act_layer=act,
        )
        # timm built an RGB conv patch embedding; DOFA replaces it (as DOFA-CLIP does).
        self.patch_embed = DofaPatchEmbed(
            patch_size=config.patch_size,
            embed_dim=config.hidden_size,
            padding=config.embed_padding,
            wave_dim=config.wave_dim,
            num_weight_tokens=config.num_weight_tokens,
        )
        self.grid = (config.grid_size, config.grid_size)
        # Set (with `_gradient_checkpointing_func`) by transformers' `gradient_checkpointing_enable`
        # on a SkyEye model: the blocks' activations are then recomputed in the backward pass.
        self.gradient_checkpointing = False

    def embed(self, pixel_values: Tensor, wavelengths: Tensor) -> Tensor:
        """(B, C, H, W) + (C,) µm -> tokens with position embeddings (B, prefix + N, D)."""
        x = self.patch_embed(pixel_values, wavelengths)
        grid = self.patch_embed.grid_size(pixel_values.shape[-2], pixel_values.shape[-1])
        pos = self.pos_embed
        assert pos is not None  # timm's VisionTransformer always has one here (no pos_embed="none")
        if grid != self.grid:
            pos = resample_abs_pos_embed(
                pos,
                new_size=list(grid),
                old_size=list(self.grid),
                num_prefix_tokens=self.num_prefix_tokens,
            )
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.pos_drop(x + pos.to(x.dtype))
        return self.norm_pre(x)

    def block_outputs(self, pixel_values: Tensor, wavelengths: Tensor, last: int) -> Tensor:
        """Run blocks 0..``last`` (inclusive) and return that block's output (B, prefix + N, D)."""
        x = self.embed(pixel_values, wavelengths)
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks[: last + 1]:
            x = self._gradient_checkpointing_func(block, x) if checkpointing else block(x)
        return x

    def pooled(self, pixel_values: Tensor, wavelengths: Tensor) -> Tensor:
        """Image embedding (B, D): final norm + pool head, exactly timm's pre-logits path."""
        x = self.block_outputs(pixel_values, wavelengths, len(self.blocks) - 1)
        return self.forward_head(self.norm(x), pre_logits=True)

    def forward(self, pixel_values: Tensor, wavelengths: Tensor) -> Tensor:  # type: ignore[override]
        """Classification logits (B, num_classes) or the pooled embedding when no head."""
        x = self.block_outputs(pixel_values, wavelengths, len(self.blocks) - 1)
        return self.forward_head(self.norm(x))
