"""SkyEye: a multimodal remote-sensing chat assistant.

The library follows the data path, one subpackage per role; lower layers never import higher
ones (tests/layout/test_import_graph.py checks it):

    errors, constants   every exception a user may catch; special tokens, ignore index, dtype names
    atomic, logs, bundled   atomic output files; logging set-up; the bundled models (skyeye-tiny)
    io          raster files -> RasterImage (bands, wavelengths, CRS); sensors; RLE
    processing  RasterImage + conversation -> model inputs (image processor, processor)
    modeling    config, vision towers, projector, mask decoders, LLM loading, the model
    grounding   boxes and [SEG] phrases parsed from answers; GeoJSON / GeoTIFF export
    render      display composites and overlays
    data        a record's image as read (one reader); the training dataset and collator
    chat        ChatSession (conversation state, streaming), the terminal chat, mask export
    scene       whole scenes window by window: mask COG, polygons, preview, answer.json
    scenechat   the chat's whole-scene follow-up (python -m skyeye.chat)
    evaluation  metrics, evaluation samples, scoring, runner, report, CLI
    hub         model cards and uploads

The main names are importable from the package root, loaded lazily. Importing `skyeye` stays
light (no torch, no transformers: `skyeye.io` reads rasters without them) and registers SkyEye
with transformers' Auto classes as soon as those are imported (`skyeye.modeling.auto_hook`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "SkyEyeConfig": "skyeye.modeling.configuration",
    "SkyEyeForConditionalGeneration": "skyeye.modeling.model",
    "SkyEyeModel": "skyeye.modeling.backbone",
    "SkyEyeProcessor": "skyeye.processing.processor",
    "SkyEyeImageProcessor": "skyeye.processing.image_processor",
    "ChatSession": "skyeye.chat.session",
    "ChatReply": "skyeye.chat.session",
    "GenerationSettings": "skyeye.chat.session",
    "load_chat": "skyeye.chat.session",
    "build_model": "skyeye.modeling.builder",
    "read_raster": "skyeye.io.raster",
    "RasterImage": "skyeye.io.raster",
    "RasterReadError": "skyeye.io.raster",
    "load_vision_tower": "skyeye.modeling.vision",
    "list_bundled_models": "skyeye.bundled",
    "analyze_scene": "skyeye.scene.pipeline",
    "SceneResult": "skyeye.scene.pipeline",
    "SceneConfig": "skyeye.scene.config",
    "ReadPolicy": "skyeye.io.policy",
}

__all__ = sorted(_EXPORTS)

from skyeye.modeling import auto_hook as _auto_hook  # noqa: E402

_auto_hook.install()


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'skyeye' has no attribute {name!r}")
