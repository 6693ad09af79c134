"""The scene head: how well a name ("forest", "parking lot") describes a whole image.

The 135M LLM does not look at the image when it picks among scene names: scored by option
likelihood, its letter on 389 held-out scene questions was the same with and without the image
(docs/evaluation.md). The scene head is scored against the image instead, as a CLIP-style dual
encoder: the tower's patch features, mean-pooled and standardised, are projected into a small
shared space, and so is the name, read as the mean of the LLM's input embeddings of its tokens.
Their cosine (times a fixed temperature) scores the name. Because names are read through the
LLM's vocabulary, a name never trained on ("freeway") still lands near the trained ones it shares
words or meaning with ("viaduct", "railway station"): that is what lets a head trained on one
scene set answer another's class list.

Built when ``config.scene_head`` is set (`SkyEyeForConditionalGeneration.scene_head`); trained by
``python -m finetune.scene_stage`` with everything else frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from skyeye.modeling.backbone import ImageList
from skyeye.modeling.configuration import SkyEyeConfig

if TYPE_CHECKING:
    from skyeye.modeling.model import SkyEyeForConditionalGeneration

__all__ = ["SceneHead", "scene_scores"]

#: CLIP learns its temperature; a fixed one is enough for a head this small (and keeps the
#: scores comparable between checkpoints).
LOGIT_SCALE = 20.0


class SceneHead(nn.Module):
    """Scores names against images: (n_images, K) scaled cosines.

    ``feature_mean`` / ``feature_std`` (D_vision,) standardise the pooled tower features; the
    scene stage sets them from its training images (they are saved with the weights).
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, config: SkyEyeConfig) -> None:
        super().__init__()
        if config.text_config is None:
            raise ValueError("the scene head needs the LLM's config (its embedding width)")
        vision_dim = config.vision_config.hidden_size
        text_dim = config.text_config.hidden_size
        dim = config.scene_head_dim
        self.register_buffer("feature_mean", torch.zeros(vision_dim))
        self.register_buffer("feature_std", torch.ones(vision_dim))
        self.image_proj = nn.Linear(vision_dim, dim)
        self.text_proj = nn.Linear(text_dim, dim)

    @staticmethod
    def pool(vision: torch.Tensor) -> torch.Tensor:
        """(n, N, D_vision) patch features -> (n, D_vision) image features (the patch mean)."""
        return vision.float().mean(dim=1)

    @staticmethod
    def embed_names(name_ids: Sequence[Sequence[int]], table: torch.Tensor) -> torch.Tensor:
        """(K, D_text): per name, the mean of the embedding rows ``table`` (V, D_text) of its
        token ids (each name needs at least one)."""
        if any(len(ids) == 0 for ids in name_ids):
            raise ValueError("every name needs at least one token")
        return torch.stack([table[list(ids)].float().mean(dim=0) for ids in name_ids])

    def forward(self, pooled: torch.Tensor, names: torch.Tensor) -> torch.Tensor:
        """Scores (n, K) of pooled image features (n, D_vision) against names (K, D_text)."""
        weight = self.image_proj.weight
        x = (pooled.to(weight) - self.feature_mean) / self.feature_std
        image = F.normalize(self.image_proj(x), dim=-1)
        text = F.normalize(self.text_proj(names.to(weight)), dim=-1)
        return LOGIT_SCALE * image @ text.T


@torch.no_grad()
def scene_scores(
    model: SkyEyeForConditionalGeneration,
    pixel_values: ImageList,
    wavelengths: ImageList,
    name_ids: Sequence[Sequence[int]],
) -> torch.Tensor:
    """(n_images, K) scores of each image against each name (token ids from the processor's
    tokenizer); raises ValueError when the model has no scene head."""
    head = model.scene_head
    if head is None:
        raise ValueError(
            "this model has no scene head (config.scene_head is off); train one with "
            "python -m finetune.scene_stage"
        )
    vision, _ = model.encode_images(pixel_values, wavelengths)
    table = model.language_model.get_input_embeddings().weight
    return head(SceneHead.pool(vision), SceneHead.embed_names(name_ids, table))
