"""The demo's whole-scene step: a large image's mask or amount answer re-asked of the whole scene
at its own resolution (`skyeye.scenechat.follow`), in a thread, with its progress streamed.

Closing the progress generator (a closed browser tab) stops the analysis after the batch being
run; the finished windows stay in the session's folder.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from skyeye.chat.session import ChatSession
from skyeye.errors import SceneCancelled
from skyeye.io.image import RasterImage
from skyeye.scene.pipeline import SceneResult
from skyeye.scenechat.follow import SceneOptions, record_scene_answer, run_scene

logger = logging.getLogger(__name__)

#: The scene files offered for download, by `SceneResult.paths` name.
DOWNLOADS = ("mask", "geojson", "answer")


@dataclass
class SceneTurn:
    """What a scene adds to a demo turn: the result (None: it failed, `note` says why), the
    overlay (its preview), the downloads and the note under the chat."""

    result: SceneResult | None
    overlay: np.ndarray | None = None
    files: list[Path] = field(default_factory=list)
    note: str = ""


def stream_scene(
    chat: ChatSession,
    image: RasterImage,
    source: Path,
    name: str,
    prompt: str,
    text: str,
    out_dir: Path,
    options: SceneOptions,
) -> Generator[str, None, SceneTurn]:
    """Yield the chat's answer `text` followed by the scene's progress, then by its answer;
    returns the `SceneTurn`. A failed analysis is logged and said in the note, not raised."""
    yield f"{text}\n\n{progress_line(0, 0)}"
    try:
        with closing(scene_progress(chat, image, source, prompt, out_dir, options)) as steps:
            while True:
                yield f"{text}\n\n{progress_line(*next(steps))}"
    except StopIteration as finished:
        result: SceneResult = finished.value
    except (ValueError, OSError) as err:
        logger.warning("scene analysis of %s failed: %s", name, err)
        yield text
        return SceneTurn(
            None, note=f"The whole-scene analysis failed ({err}); showing the answer on the image."
        )
    overlay, files, note = scene_outputs(result, name)
    yield f"{text}\n\n{record_scene_answer(chat, result)}"
    return SceneTurn(result, overlay, files, note)


def scene_progress(
    chat: ChatSession,
    image: RasterImage,
    source: str | Path | Sequence[str | Path],
    prompt: str,
    out_dir: Path,
    options: SceneOptions,
) -> Generator[tuple[int, int], None, SceneResult]:
    """Run the scene analysis in a thread; yields (windows done, windows total) as batches
    finish and returns the `SceneResult` (raises what the analysis raised)."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def callback(done: int, total: int) -> None:
        if stop.is_set():
            raise SceneCancelled(f"scene analysis of {source} stopped by the demo")
        events.put(("progress", (done, total)))

    def work() -> None:
        try:
            result = run_scene(
                chat,
                image,
                source,
                prompt,
                out_dir,
                options,
                progress=False,
                progress_callback=callback,
            )
            events.put(("done", result))
        except BaseException as err:  # handed to the reader's thread
            events.put(("error", err))

    worker = threading.Thread(target=work, name="skyeye-demo-scene", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = events.get()
            if kind == "progress":
                yield value
            elif kind == "done":
                return value
            else:
                raise value
    finally:
        stop.set()
        worker.join()


def progress_line(done: int, total: int) -> str:
    """'⏳ Whole scene at its own resolution: 12 / 625 windows' (total 0: not started yet)."""
    state = f"{done} / {total} windows" if total else "reading the scene"
    return f"⏳ Whole scene at its own resolution: {state}"


def scene_outputs(result: SceneResult, name: str) -> tuple[np.ndarray, list[Path], str]:
    """(overlay, downloads, note) of a finished scene: its preview (the mask over the scene's
    composite), the full-resolution mask (COG GeoTIFF), its polygons (GeoJSON) and answer.json."""
    with Image.open(result.paths["preview"]) as preview:
        overlay = np.asarray(preview.convert("RGB"))
    files = [result.paths[key] for key in DOWNLOADS if result.paths[key].is_file()]
    scene = result.answer["scene"]
    note = (
        f"Whole scene of {name} at its own resolution ({scene['width']}×{scene['height']} px, "
        f"{result.windows_total} windows): download the mask (Cloud-Optimized GeoTIFF on the "
        "scene's grid), its polygons (GeoJSON) and answer.json below."
    )
    return overlay, files, note
