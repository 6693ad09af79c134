"""DOFA v1 trunk in torchgeo's key layout (``torchgeo.models.DOFA``)."""

from __future__ import annotations

import torch

from skyeye.modeling.vision.configuration import SkyEyeVisionConfig
from skyeye.modeling.vision.vit import DofaViT


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position table for a ``grid`` x ``grid`` map: (grid*grid, dim)."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos position embeddings need a width divisible by 4, got {dim}")
    coords = torch.arange(grid, dtype=torch.float32)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    freq = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim / 4))

    def code(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1)[:, None] * freq[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    # MAE encodes the column index in the first half and the row index in the second.
    return torch.cat([code(cols), code(rows)], dim=1)


class DofaV1Trunk(DofaViT):
    """Keys: ``cls_token``, ``pos_embed``, ``patch_embed.*``, ``blocks.N.*``, then ``fc_norm.*``
    (avg pool) or ``norm.*`` (token pool) when ``final_norm``, and ``head.*`` when
    ``num_classes`` > 0 -- the same names and maths as torchgeo's DOFA (timm Blocks, padding 1,
    CLS token, fixed ``pos_embed`` that includes the CLS slot).
    """

    def __init__(self, config: SkyEyeVisionConfig) -> None:
        if config.family != "dofa_v1":
            raise ValueError(f"DofaV1Trunk needs family 'dofa_v1', got {config.family!r}")
        super().__init__(config)
        pos_embed = self.pos_embed
        assert pos_embed is not None  # built by the parent with a learned position table
        with torch.no_grad():
            pos_embed.zero_()
            if config.hidden_size % 4 == 0:
                pos_embed[0, 1:] = sincos_2d(config.hidden_size, config.grid_size)
        # torchgeo/MAE keep the sin-cos table fixed.
        pos_embed.requires_grad_(False)
