"""DOFA vision towers: wavelength-conditioned patch embedding + ViT trunk."""

from skyeye.modeling.vision.checkpoint import CheckpointKeyError
from skyeye.modeling.vision.configuration import SkyEyeVisionConfig
from skyeye.modeling.vision.loading import load_vision_tower
from skyeye.modeling.vision.presets import get_vision_config, list_vision_configs
from skyeye.modeling.vision.tower import SkyEyeVisionTower

__all__ = [
    "CheckpointKeyError",
    "SkyEyeVisionConfig",
    "SkyEyeVisionTower",
    "get_vision_config",
    "list_vision_configs",
    "load_vision_tower",
]
