"""DOFA vision towers: wavelength-conditioned patch embedding + ViT trunk."""

from skyeye.vision.checkpoint import CheckpointKeyError
from skyeye.vision.configuration import SkyEyeVisionConfig
from skyeye.vision.loading import load_vision_tower
from skyeye.vision.presets import get_vision_config, list_vision_configs
from skyeye.vision.tower import SkyEyeVisionTower

__all__ = [
    "CheckpointKeyError",
    "SkyEyeVisionConfig",
    "SkyEyeVisionTower",
    "get_vision_config",
    "list_vision_configs",
    "load_vision_tower",
]
