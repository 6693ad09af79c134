"""SkyEye: a multimodal remote-sensing chat assistant.

The main names are importable from the package root; they are loaded lazily so that
`import skyeye` stays cheap for tools that need only a part (e.g. the raster reader).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "SkyEyeConfig": "skyeye.config",
    "SkyEyeForConditionalGeneration": "skyeye.modeling",
    "SkyEyeProcessor": "skyeye.processing",
    "SkyEyeImageProcessor": "skyeye.image_processing",
    "ChatSession": "skyeye.inference",
    "ChatReply": "skyeye.inference",
    "GenerationSettings": "skyeye.inference",
    "load_chat": "skyeye.inference",
    "build_model": "skyeye.builder",
    "read_raster": "skyeye.io",
    "RasterImage": "skyeye.io",
    "RasterReadError": "skyeye.io",
    "load_vision_tower": "skyeye.vision",
    "list_presets": "skyeye.presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'skyeye' has no attribute {name!r}")
