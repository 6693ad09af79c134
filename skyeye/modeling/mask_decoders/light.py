"""The light ``[SEG]`` mask decoder ("light" in ``MASK_DECODERS``).

LISA-style: the LLM's last hidden state at a ``[SEG]`` position goes through an MLP
(``text_hidden_fcs``) into the decoder width, then a small two-way transformer (SAM's light
decoder, in miniature) lets that query and the image tokens attend to each other; a
hypernetwork MLP turns the query into a per-pixel classifier that is dotted with the x4
upsampled image tokens, and the logits are resized bilinearly to the requested size.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SkyEyeMaskHead"]


def _num_heads(width: int) -> int:
    for h in (8, 4, 2, 1):
        if width % h == 0 and width // h >= 8:
            return h
    return 1


def _sincos_2d(h: int, w: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(h*w, dim) fixed 2-D sin-cos position code; size-agnostic, so any token grid works."""
    quarter = max(dim // 4, 1)
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    parts = []
    for coord in (ys.reshape(-1), xs.reshape(-1)):
        ang = coord[:, None] * omega[None, :]
        parts += [ang.sin(), ang.cos()]
    pe = torch.cat(parts, dim=1)
    if pe.shape[1] < dim:  # widths not divisible by 4
        pe = F.pad(pe, (0, dim - pe.shape[1]))
    return pe[:, :dim].to(dtype)


class _TwoWayBlock(nn.Module):
    """Queries self-attend, attend to image tokens, MLP; then image tokens attend to queries."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.q2i = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim)
        )
        self.norm3 = nn.LayerNorm(dim)
        self.i2q = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm4 = nn.LayerNorm(dim)

    def forward(
        self, q: Tensor, q_pe: Tensor, img: Tensor, img_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        # As in SAM, position codes are re-added to queries/keys at every attention.
        qq = q + q_pe
        q = self.norm1(q + self.self_attn(qq, qq, q, need_weights=False)[0])
        q = self.norm2(q + self.q2i(q + q_pe, img + img_pe, img, need_weights=False)[0])
        q = self.norm3(q + self.mlp(q))
        img = self.norm4(img + self.i2q(img + img_pe, q + q_pe, q, need_weights=False)[0])
        return q, img


class SkyEyeMaskHead(nn.Module):
    """Light CPU-friendly mask decoder ("light" in ``MASK_DECODERS``).

    Reads from ``config``: ``text_config.hidden_size`` (LLM width), ``vision_config.hidden_size``
    (vision width), ``mask_head_hidden_size`` (default 256), ``mask_head_layers`` (default 2).
    """

    def __init__(self, config: Any) -> None:
        super().__init__()
        d_text = int(config.text_config.hidden_size)
        d_vis = int(config.vision_config.hidden_size)
        dim = int(getattr(config, "mask_head_hidden_size", 256) or 256)
        layers = int(getattr(config, "mask_head_layers", 2) or 2)
        if dim < 8 or dim % 8 != 0:
            raise ValueError(f"mask_head_hidden_size must be a positive multiple of 8, got {dim}")
        self.d_text, self.d_vis, self.dim = d_text, d_vis, dim
        # LISA's text_hidden_fcs: Linear, ReLU, Linear (+ dropout 0).
        self.text_hidden_fcs = nn.Sequential(
            nn.Linear(d_text, d_text), nn.ReLU(), nn.Linear(d_text, dim)
        )
        self.vision_proj = nn.Sequential(nn.LayerNorm(d_vis), nn.Linear(d_vis, dim))
        # A learned output token (SAM's mask token) rides along with the [SEG] query.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.query_pe = nn.Parameter(torch.zeros(1, 2, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.query_pe, std=0.02)
        heads = _num_heads(dim)
        self.blocks = nn.ModuleList(_TwoWayBlock(dim, heads) for _ in range(layers))
        self.final_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.final_norm = nn.LayerNorm(dim)
        up1, up2 = dim // 4, dim // 8
        # x4 upsampling of the token grid, as SAM's output_upscaling.
        self.upscale = nn.Sequential(
            nn.ConvTranspose2d(dim, up1, kernel_size=2, stride=2),
            nn.GroupNorm(1, up1),
            nn.GELU(),
            nn.ConvTranspose2d(up1, up2, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.hyper_mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, up2))

    def forward(
        self,
        seg_hidden: Tensor,
        vision_features: Tensor,
        grid: tuple[int, int],
        output_size: tuple[int, int],
    ) -> Tensor:
        """seg_hidden (K, D_text), vision_features (K, N, D_vis), grid (h, w) -> logits (K, H, W)."""
        _, kernel, feat = self.decode_coarse(seg_hidden, vision_features, grid)
        logits = torch.einsum("kc,kchw->khw", kernel, feat)
        if tuple(logits.shape[-2:]) != tuple(output_size):
            logits = F.interpolate(
                logits[:, None], size=tuple(output_size), mode="bilinear", align_corners=False
            )[:, 0]
        return logits

    def decode_coarse(
        self, seg_hidden: Tensor, vision_features: Tensor, grid: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The two-way transformer and x4 upscaling: the decoded query (K, C), the per-mask
        classifier (K, C/8) and the upscaled token features (K, C/8, 4h, 4w) it is dotted with."""
        self._check_inputs(seg_hidden, vision_features, grid)
        dtype = cast(Tensor, self.vision_proj[1].weight).dtype
        img = self.vision_proj(vision_features.to(dtype))  # (K, N, C)
        return self.decode_tokens(seg_hidden, img, grid)

    def decode_tokens(
        self, seg_hidden: Tensor, img: Tensor, grid: tuple[int, int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """`decode_coarse` after the image tokens' projection: ``img`` (K, N, C) are image tokens
        in the decoder's width (one image's projected patch tokens, or a change decoder's fused
        pair); returns the decoded query (K, C), the classifier (K, C/8) and the upscaled token
        features (K, C/8, 4h, 4w)."""
        k = seg_hidden.shape[0]
        h, w = grid
        seg = self.text_hidden_fcs(seg_hidden.to(img.dtype))  # (K, C)
        img_pe = _sincos_2d(h, w, self.dim, img.device, img.dtype)[None]
        q = torch.cat([self.mask_token.expand(k, -1, -1), seg[:, None, :]], dim=1)  # (K, 2, C)
        q_pe = self.query_pe.expand(k, -1, -1) + torch.cat(
            [torch.zeros_like(seg[:, None, :]), seg[:, None, :]], dim=1
        )
        for block in self.blocks:
            q, img = block(q, q_pe, img, img_pe)
        q = self.final_norm(q + self.final_attn(q + q_pe, img + img_pe, img, need_weights=False)[0])
        feat = self.upscale(img.transpose(1, 2).reshape(k, self.dim, h, w))  # (K, C/8, 4h, 4w)
        return q[:, 0], self.hyper_mlp(q[:, 0]), feat  # (K, C), (K, C/8), (K, C/8, 4h, 4w)

    def _check_inputs(
        self, seg_hidden: Tensor, vision_features: Tensor, grid: tuple[int, int]
    ) -> None:
        if seg_hidden.ndim != 2 or seg_hidden.shape[1] != self.d_text:
            raise ValueError(
                f"seg_hidden must be (K, {self.d_text}), got {tuple(seg_hidden.shape)}"
            )
        if vision_features.ndim != 3 or vision_features.shape[2] != self.d_vis:
            raise ValueError(
                f"vision_features must be (K, N, {self.d_vis}), got {tuple(vision_features.shape)}"
            )
        if vision_features.shape[0] != seg_hidden.shape[0]:
            raise ValueError(
                f"one image-feature row per [SEG] is needed: got {seg_hidden.shape[0]} [SEG] states and "
                f"{vision_features.shape[0]} feature rows; index the image features by each [SEG]'s sample"
            )
        h, w = grid
        if h * w != vision_features.shape[1]:
            raise ValueError(
                f"grid {grid} has {h * w} cells but vision_features has {vision_features.shape[1]} tokens; "
                "pass the patch grid of the vision tower (drop CLS/pooled tokens first)"
            )
