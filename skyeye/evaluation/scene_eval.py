"""Refseg at native resolution: a sample whose image is larger than the scene window is answered
by the whole-scene pipeline (`skyeye.scene.analyze_scene`) and compared at the label's grid.

The chat reads an image at `read_size` (512 px a side): on a 10980 x 10980 tile every field is
gone before the model sees it, and the predicted mask is blown up to the label's grid. Here the
same prompt is asked of every window at the scene's own resolution (or `scene_gsd`), the
stitched mask (`mask.tif`, 1 inside, 0 outside, nodata 255 counted as outside) is the
prediction, and the scorer resizes it to the label only when `scene_gsd` changed the grid.

Only one-image samples with one reference mask take this path (a scene answers one question
about one image; its [SEG] masks are united into one); history turns are not replayed to the
windows. Other samples keep the chat's path.
"""

from __future__ import annotations

import logging
import tempfile
import time
from typing import Any

import rasterio

from skyeye.chat.session import ChatSession
from skyeye.evaluation.config import EvalConfig
from skyeye.evaluation.samples import EvalSample
from skyeye.evaluation.scoring import Prediction
from skyeye.io.image import RasterImage
from skyeye.scene.config import SceneConfig
from skyeye.scene.pipeline import analyze_scene

logger = logging.getLogger(__name__)


def takes_scene_path(sample: EvalSample, config: EvalConfig, images: list[RasterImage]) -> bool:
    """True when `sample` is scored through the scene pipeline (see the module docstring)."""
    if config.scene_settings is None or len(images) != 1 or len(sample.ref_masks) != 1:
        return False
    height, width = images[0].source_shape or images[0].data.shape[1:]
    return max(height, width) > config.scene_window


def scene_config(config: EvalConfig, session: ChatSession, image: RasterImage) -> SceneConfig:
    """The scene run of an evaluation: its `--scene-*` settings, the session's longest answer,
    the band names, wavelengths and sensor the sample's image was read with."""
    return SceneConfig(
        window=config.scene_window,
        overlap=config.scene_overlap,
        batch=config.scene_batch,
        gsd=config.scene_gsd,
        max_new_tokens=session.settings.max_new_tokens,
        progress=False,
        sensor=image.sensor,
        band_names=list(image.band_names),
        wavelengths=None if image.wavelengths is None else list(image.wavelengths),
    )


def predict_scene(
    session: ChatSession,
    sample: EvalSample,
    image: RasterImage,
    prompt: str,
    config: EvalConfig,
) -> Prediction:
    """Ask `prompt` of the whole scene of `sample`'s image with the session's model.

    The prediction's one mask is the stitched scene mask on the scene's grid (no mask when no
    window's answer had a [SEG]); `Prediction.scene` records window, overlap, gsd and grid.
    """
    started = time.perf_counter()
    source = sample.images[0].source
    with tempfile.TemporaryDirectory(prefix="skyeye-eval-scene-") as out:
        scene_run = scene_config(config, session, image)
        result = analyze_scene(source, prompt, out, scene_run, model=session)
        with rasterio.open(result.paths["mask"]) as src:
            mask = src.read(1) == 1
    segmented = any("mask_pixels" in w for w in result.answer["windows"])
    scene: dict[str, Any] = {
        **(config.scene_settings or {}),
        "grid": [int(mask.shape[0]), int(mask.shape[1])],
        "windows": result.windows_total,
        "windows_skipped": result.windows_skipped,
        "window_answers": sorted({w["answer"] for w in result.answer["windows"] if "answer" in w}),
    }
    logger.info("%s: scene of %d windows on a %s grid", sample.id, result.windows_total, mask.shape)
    return Prediction(
        sample,
        prompt,
        result.text,
        [],
        [mask] if segmented else [],
        [(int(mask.shape[0]), int(mask.shape[1]))],
        time.perf_counter() - started,
        scene=scene,
    )
