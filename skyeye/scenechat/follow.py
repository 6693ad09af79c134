"""When and how a chat answer is followed by a whole-scene analysis.

The rule is the model's, not the question's wording: the chat answers on the image as read (the
thumbnail); if that answer carries a `[SEG]` mask or states a share or an area, and the image's
native size is larger than the scene window, the same prompt is asked of the whole scene at its
own resolution with the session's model (`skyeye.scene.analyze_scene`). The scene's answer
(area, share of valid pixels, compass position) and its files (`mask.tif` COG on the scene's
grid, `mask.geojson`) then stand for the answer's masks. Used by the terminal chat and the demo.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from skyeye.chat.measured import states_amount
from skyeye.chat.session import ChatReply, ChatSession
from skyeye.io.image import RasterImage
from skyeye.scene.config import DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_WINDOW, SceneConfig
from skyeye.scene.pipeline import SceneResult, analyze_scene

logger = logging.getLogger(__name__)

#: The scene files a chat offers, in the order shown.
SCENE_FILES = ("mask", "geojson", "gpkg", "preview", "answer")


@dataclass(frozen=True)
class SceneOptions:
    """What the chat's `--scene-*` flags set of a scene analysis (see `scene_config`).

    window / overlap: window side and overlap in pixels; an image larger than `window` on its
    longer side is analysed as a scene. batch: windows per model call. gsd: output pixel size
    (None: native). max_new_tokens: longest answer per window. These fields also name the
    chat's scene folder (`scene_folder`), so the same question finds its finished run.
    """

    window: int = DEFAULT_WINDOW
    overlap: int = DEFAULT_OVERLAP
    batch: int = DEFAULT_BATCH
    gsd: float | None = None
    max_new_tokens: int = 64

    def scene_config(self, image: RasterImage, progress: bool = True) -> SceneConfig:
        """The `SceneConfig` of a run on the scene `image` was read from: these options with
        the band names, wavelengths and sensor the chat used."""
        return SceneConfig(
            window=self.window,
            overlap=self.overlap,
            batch=self.batch,
            gsd=self.gsd,
            max_new_tokens=self.max_new_tokens,
            progress=progress,
            sensor=image.sensor,
            band_names=list(image.band_names),
            wavelengths=None if image.wavelengths is None else list(image.wavelengths),
        )


def wants_scene(reply: ChatReply) -> bool:
    """True when the answer points at pixels: it has a mask, or states a share or an area.

    A change answer (a mask over a pair of dates, ``reply.mask_pairs``) is not: one date's scene
    cannot answer it (each window would be asked about one image); two whole scenes are compared
    by ``python -m skyeye.scene --image A --image B``."""
    if any(pair is not None for pair in reply.mask_pairs):
        return False
    return bool(reply.masks) or states_amount(reply.text)


def scene_image_index(reply: ChatReply, images: Sequence[RasterImage], window: int) -> int | None:
    """Index in `images` of the image to analyse as a scene after `reply`, or None.

    The image is the one the first mask lies on (else the latest image); it must be
    georeferenced (the outputs are maps) and larger than `window` at its native size.
    """
    if not images or not wants_scene(reply):
        return None
    index = reply.mask_images[0] if reply.mask_images else len(images) - 1
    image = images[index]
    if image.crs is None or image.transform is None:
        return None
    height, width = image.source_shape or image.data.shape[1:]
    return index if max(height, width) > window else None


def scene_folder(
    parent: str | Path, source: str | Path, prompt: str, options: SceneOptions
) -> Path:
    """`<parent>/scene-<source>-<prompt>-<hash>`: the same question about the same scene with
    the same settings resumes (or finds its finished run), another gets its own folder."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{Path(source).stem}-{prompt}").strip("-").lower()[:48]
    key = repr((str(source), prompt, sorted(asdict(options).items())))
    return Path(parent) / f"scene-{slug}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def run_scene(
    session: ChatSession,
    image: RasterImage,
    source: str | Path | Sequence[str | Path],
    prompt: str,
    out_dir: str | Path,
    options: SceneOptions,
    *,
    progress: bool = True,
    progress_callback: Callable[[int, int], None] | None = None,
) -> SceneResult:
    """Ask `prompt` of the whole scene `source` (the file `image` was read from) with the
    session's model, with the band names, wavelengths and sensor the chat used."""
    logger.info("scene analysis of %s (%s) into %s", source, options, out_dir)
    config = options.scene_config(image, progress=progress)
    return analyze_scene(
        source, prompt, out_dir, config, model=session, progress_callback=progress_callback
    )


def scene_answer(result: SceneResult) -> str:
    """'Whole scene at its own resolution (10980 x 10980 px, 625 windows of 512 px): Found …'"""
    scene, settings = result.answer["scene"], result.answer["settings"]
    return (
        f"Whole scene at its own resolution ({scene['width']} x {scene['height']} px, "
        f"{result.windows_total} windows of {settings['window']} px): {result.text}"
    )


def record_scene_answer(session: ChatSession, result: SceneResult) -> str:
    """`scene_answer(result)`, appended to the session's last answer so that follow-up questions
    ("how large is it?") see the whole scene's figures, not only the thumbnail's."""
    text = scene_answer(result)
    session.extend_answer(text)
    return text


def scene_files(result: SceneResult) -> list[Path]:
    """The scene's outputs a chat offers: mask COG, GeoJSON, GeoPackage, preview, answer.json."""
    return [result.paths[name] for name in SCENE_FILES if result.paths[name].is_file()]
