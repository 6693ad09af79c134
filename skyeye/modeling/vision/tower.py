"""The vision tower used by SkyEye: a DOFA trunk that returns patch tokens of one layer."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from skyeye.modeling.vision.checkpoint import load_strict
from skyeye.modeling.vision.configuration import SkyEyeVisionConfig
from skyeye.modeling.vision.dofa_clip import DofaClipTrunk
from skyeye.modeling.vision.dofa_v1 import DofaV1Trunk
from skyeye.modeling.vision.vit import DofaViT

logger = logging.getLogger(__name__)

TRUNKS: dict[str, type[DofaViT]] = {"dofa_clip": DofaClipTrunk, "dofa_v1": DofaV1Trunk}
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class SkyEyeVisionTower(nn.Module):
    """DOFA vision tower. ``trunk`` holds the checkpoint's trunk keys unchanged, so open_clip's
    ``visual.trunk.<k>`` and torchgeo's ``<k>`` both map to ``trunk.<k>``.
    """

    def __init__(self, config: SkyEyeVisionConfig) -> None:
        super().__init__()
        config.validate_vision()
        self.config = config
        self.trunk = TRUNKS[config.family](config)
        self.hidden_size = config.hidden_size
        self.num_patches = config.num_patches

    @property
    def num_prefix_tokens(self) -> int:
        """CLS/register tokens the trunk prepends (never returned as features)."""
        return self.trunk.num_prefix_tokens

    def resolve_layer(self, feature_layer: int | None) -> int:
        """Map a Python-style block index (None = config default) to 0..depth-1."""
        depth = self.config.num_hidden_layers
        layer = self.config.feature_layer if feature_layer is None else int(feature_layer)
        if not -depth <= layer < depth:
            raise ValueError(
                f"feature_layer={layer} is out of range for {depth} layers (use -{depth}..{depth - 1})"
            )
        return layer % depth

    def forward(
        self, pixel_values: Tensor, wavelengths: Tensor, feature_layer: int | None = None
    ) -> Tensor:
        """Patch tokens of one block.

        Args:
            pixel_values: (B, C, H, W) normalised bands, any C.
            wavelengths: (C,) central wavelength of each band in µm.
            feature_layer: block index (-1 = last, -2 = penultimate, 0 = first); None uses
                ``config.feature_layer``.

        Returns:
            (B, N, D) patch tokens, row-major over the patch grid; the CLS token is dropped.
            ``config.feature_norm`` applies the final norm when the last block is selected.
        """
        layer = self.resolve_layer(feature_layer)
        x = self.trunk.block_outputs(pixel_values, wavelengths, layer)
        if self.config.feature_norm and layer == self.config.num_hidden_layers - 1:
            x = self.trunk.norm(x)
        return x[:, self.num_prefix_tokens :]

    def pooled(self, pixel_values: Tensor, wavelengths: Tensor) -> Tensor:
        """Image embedding (B, D): attention pool (DOFA-CLIP, used for zero-shot) or the
        avg/token head input (DOFA v1)."""
        return self.trunk.pooled(pixel_values, wavelengths)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``folder``; returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        return folder

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> SkyEyeVisionTower:
        """Load a folder written by :meth:`save_pretrained` (all keys must match)."""
        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing; a SkyEye vision tower folder holds {CONFIG_NAME} and "
                    f"{WEIGHTS_NAME} (written by SkyEyeVisionTower.save_pretrained)"
                )
        model_type = json.loads(config_path.read_text()).get("model_type")
        if model_type != SkyEyeVisionConfig.model_type:
            raise ValueError(
                f"{config_path} has model_type={model_type!r}, expected "
                f"{SkyEyeVisionConfig.model_type!r}; use load_vision_tower() for other layouts"
            )
        config = SkyEyeVisionConfig.from_pretrained(folder)
        tower = cls(config)
        load_strict(tower, load_file(str(weights_path)), source=str(weights_path))
        return tower.to(device=device, dtype=dtype)
