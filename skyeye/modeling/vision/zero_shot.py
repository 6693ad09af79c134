"""Zero-shot scoring with a DOFA-CLIP checkpoint: our vision tower + open_clip's text tower.

The published DOFA-CLIP checkpoints are open_clip folders whose text side is open_clip's
``TextTransformer`` (SigLIP text tower) and whose tokenizer is the SigLIP Hugging Face tokenizer
named by ``text_cfg.hf_tokenizer_name``. The tokenizer is taken from tokenizer files inside the
folder when present, else from that hub name (needs the hub or its cache); configs without a
``hf_tokenizer_name`` use open_clip's bundled ``SimpleTokenizer`` (works offline).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skyeye.modeling.vision.checkpoint import infer_trunk_config, load_strict
from skyeye.modeling.vision.loading import (
    heads_from_open_clip_config,
    read_open_clip_config,
    read_open_clip_state,
    resolve_source,
    split_open_clip_state,
)
from skyeye.modeling.vision.tower import SkyEyeVisionTower

logger = logging.getLogger(__name__)

Tokenizer = Callable[..., Tensor]
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model")


class ZeroShotClassifier(nn.Module):
    """Image-text matching head: keys ``visual.trunk.*``, ``text.*``, ``logit_scale``,
    ``logit_bias`` exactly as in the open_clip checkpoint."""

    def __init__(
        self,
        visual: SkyEyeVisionTower,
        text: nn.Module,
        tokenizer: Tokenizer,
        *,
        context_length: int,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float | None = -10.0,
    ) -> None:
        super().__init__()
        self.visual = visual
        self.text = text
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.logit_bias = (
            None if init_logit_bias is None else nn.Parameter(torch.tensor(float(init_logit_bias)))
        )

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        *,
        tokenizer: Tokenizer | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
    ) -> ZeroShotClassifier:
        """Build from an open_clip DOFA-CLIP folder or hub id; all weights load strictly.

        ``tokenizer`` (a callable ``(list[str], context_length=...) -> (L, T) ids``) overrides
        the one named by ``open_clip_config.json``.
        """
        from open_clip.model import _build_text_tower

        folder = resolve_source(source, cache_dir=cache_dir, local_files_only=local_files_only)
        model_cfg = read_open_clip_config(folder)
        text_cfg: dict[str, Any] = dict(model_cfg.get("text_cfg", {}))
        if text_cfg.get("hf_model_name"):
            raise ValueError(
                f"{folder}: Hugging Face text towers (text_cfg.hf_model_name) are not supported; "
                "DOFA-CLIP uses open_clip's TextTransformer"
            )
        state, label = read_open_clip_state(folder)
        trunk, text_state = split_open_clip_state(state, label)
        visual = SkyEyeVisionTower(
            infer_trunk_config(trunk, num_heads=heads_from_open_clip_config(model_cfg))
        )
        text = _build_text_tower(
            model_cfg["embed_dim"], text_cfg, quick_gelu=model_cfg.get("quick_gelu", False)
        )
        context_length = int(text_cfg.get("context_length", 77))
        if tokenizer is None:
            tokenizer = build_tokenizer(folder, text_cfg, context_length)
        model = cls(
            visual,
            text,
            tokenizer,
            context_length=context_length,
            init_logit_bias=model_cfg.get("init_logit_bias"),
        )
        merged = {**{f"visual.trunk.{k}": v for k, v in trunk.items()}, **text_state}
        load_strict(model, merged, source=label)
        return model.to(device=device, dtype=dtype).eval()

    def encode_image(self, pixel_values: Tensor, wavelengths: Tensor) -> Tensor:
        """(B, C, H, W) + (C,) µm -> unit-norm image embeddings (B, E)."""
        return F.normalize(self.visual.pooled(pixel_values, wavelengths), dim=-1)

    def encode_text(self, labels: Sequence[str]) -> Tensor:
        """L label strings -> unit-norm text embeddings (L, E)."""
        if not labels or not all(isinstance(t, str) for t in labels):
            raise ValueError("labels must be a non-empty list of strings")
        tokens = self.tokenizer(list(labels), context_length=self.context_length)
        return F.normalize(self.text(tokens.to(self.logit_scale.device)), dim=-1)

    def logits(self, pixel_values: Tensor, wavelengths: Tensor, labels: Sequence[str]) -> Tensor:
        """Image-label logits (B, L): cosine * exp(logit_scale) (+ logit_bias)."""
        image = self.encode_image(pixel_values, wavelengths)
        text = self.encode_text(labels).to(image.dtype)
        out = image @ text.T * self.logit_scale.exp()
        return out if self.logit_bias is None else out + self.logit_bias

    def scores(self, pixel_values: Tensor, wavelengths: Tensor, labels: Sequence[str]) -> Tensor:
        """Probabilities (B, L): independent sigmoids for SigLIP (checkpoints with a
        ``logit_bias``), a softmax over the labels for CLIP-style checkpoints."""
        logits = self.logits(pixel_values, wavelengths, labels)
        return logits.sigmoid() if self.logit_bias is not None else logits.softmax(dim=-1)


def build_tokenizer(folder: Path, text_cfg: dict[str, Any], context_length: int) -> Tokenizer:
    """The tokenizer an open_clip config names: HF tokenizer (folder files first, then the hub
    name) or open_clip's SimpleTokenizer when no HF tokenizer is named."""
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    hf_name = text_cfg.get("hf_tokenizer_name")
    if not hf_name:
        return SimpleTokenizer(context_length=context_length, **kwargs)
    has_files = any((folder / f).is_file() for f in _TOKENIZER_FILES)
    source = str(folder) if has_files else hf_name
    try:
        return HFTokenizer(
            source,
            context_length=context_length,
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            **kwargs,
        )
    except (OSError, ValueError, ImportError) as err:
        raise ValueError(
            f"cannot load the tokenizer {hf_name!r} named by {folder}/open_clip_config.json "
            f"(no tokenizer files in the folder and the hub/cache lookup failed: {err}). "
            "Copy the tokenizer files into the folder or pass tokenizer= explicitly."
        ) from err
