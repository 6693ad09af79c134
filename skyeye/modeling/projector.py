"""Projector: vision patch tokens -> LLM embedding width, with optional token pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skyeye.modeling.configuration import SkyEyeConfig


class SkyEyeProjector(nn.Module):
    """Pool the patch grid (optional) and map each token to the LLM width.

    "linear" is one `nn.Linear`; "mlp2x_gelu" is LLaVA-1.5's Linear-GELU-Linear. Parameter names
    (`linear_1`, `linear_2`) follow transformers' `LlavaMultiModalProjector`.
    """

    def __init__(self, config: SkyEyeConfig) -> None:
        super().__init__()
        vision_width = config.vision_config.hidden_size
        assert config.text_config is not None  # set by SkyEyeConfig.__init__
        text_width = config.text_config.hidden_size
        self.pooling = config.token_pooling
        self.linear_1 = nn.Linear(vision_width, text_width)
        if config.projector_type == "mlp2x_gelu":
            self.act: nn.Module = nn.GELU()
            self.linear_2: nn.Module = nn.Linear(text_width, text_width)
        else:
            self.act = nn.Identity()
            self.linear_2 = nn.Identity()

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Average-pool (B, N, D) patch tokens on their square grid by `pooling` per side."""
        if self.pooling == 1:
            return features
        batch, tokens, width = features.shape
        side = int(round(tokens**0.5))
        if side * side != tokens:
            raise ValueError(f"token pooling needs a square patch grid, got {tokens} tokens")
        grid = features.transpose(1, 2).reshape(batch, width, side, side)
        grid = F.avg_pool2d(grid, self.pooling)
        return grid.flatten(2).transpose(1, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N, D_vision) -> (B, N / pooling**2, D_text)."""
        return self.linear_2(self.act(self.linear_1(self.pool(features))))
