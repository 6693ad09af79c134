"""The window runner: a scene's batches of windows through the model into the window store.

Per batch: each window's valid pixels and preview thumbnail are taken from its raw pixels,
all-nodata windows are recorded as skipped, the others go through one `WindowRunner` call
(`skyeye.scene.infer`), and every window's answer is saved (`WindowStore.save_window`). The
model is opened with the first window that holds valid pixels (a scene of nodata never loads
it), and the scene's value scaling is fixed then, once for every window.
"""

from __future__ import annotations

import ctypes
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from skyeye.errors import SceneError
from skyeye.scene.config import SceneConfig
from skyeye.scene.reader import PrefetchReader
from skyeye.scene.source import SceneSource
from skyeye.scene.stitch import thumb_offsets
from skyeye.scene.store import WindowStore
from skyeye.scene.windows import SceneWindow

if TYPE_CHECKING:  # the model's modules import torch: loaded with the first live window
    from skyeye.processing.image_processor import FixedScaling
    from skyeye.scene.infer import PreparedBatch, WindowAnswer, WindowRunner

logger = logging.getLogger(__name__)

#: Longest side of the preview PNG's composite, in pixels (before the overlay's display scale).
PREVIEW_SIZE = 1024


def preview_step(height: int, width: int) -> int:
    """Decimation of the preview's grid: every `step`-th pixel, at most PREVIEW_SIZE a side."""
    return max(1, math.ceil(max(height, width) / PREVIEW_SIZE))


@dataclass
class PreparedWindows:
    """A batch after its raw pixels are done with: per window its valid pixels (h, w) bool and
    thumbnail (C, th, tw) float32; `live` the indexes holding valid pixels and `inputs` their
    model inputs (None when none is live)."""

    windows: list[SceneWindow]
    valid: list[np.ndarray]
    thumbs: list[np.ndarray]
    live: list[int]
    inputs: PreparedBatch | None = None


class SceneRunner:
    """Runs `prompt` on a scene's windows with `model` (a name/folder, a `ChatSession` or
    (model, processor); see `skyeye.scene.infer.open_session`) into `store`.

    ``model_s`` / ``write_s``: seconds in the model and saving windows; ``windows_run``:
    windows the model answered; ``windows_done``: windows finished in this call.
    """

    def __init__(
        self,
        model: Any,
        prompt: str,
        config: SceneConfig,
        scene: SceneSource,
        store: WindowStore,
    ) -> None:
        self.model, self.prompt, self.config = model, prompt, config
        self.scene, self.store = scene, store
        self.thumb_step = preview_step(scene.grid.height, scene.grid.width)
        self.model_s = self.write_s = 0.0
        self.windows_run = self.windows_done = 0
        self._runner: WindowRunner | None = None
        self._scaling: FixedScaling | None = None

    def _open(self) -> WindowRunner:
        """The model's window runner, opened on first use (and the scene's value scaling)."""
        if self._runner is None:
            from skyeye.scene.infer import WindowRunner, open_session

            c = self.config
            session = open_session(self.model, device=c.device, dtype=c.dtype)
            runner = WindowRunner(
                session, self.prompt, max_new_tokens=c.max_new_tokens, force_answer=c.force_answer
            )
            if c.window < runner.patch_size:
                raise SceneError(
                    f"--window {c.window} is smaller than the tower's patch "
                    f"({runner.patch_size} px): use --window {runner.image_size} or more"
                )
            self._scaling = scene_scaling(runner.processor.image_processor, self.scene)
            self._runner = runner
        return self._runner

    def prepare(self, windows: list[SceneWindow], data: list[np.ndarray]) -> PreparedWindows:
        """Take what the batch needs from its raw pixels `data` (each (C, h, w), NaN = nodata);
        nothing refers to `data` afterwards, so the caller can free it before the model runs."""
        valid = [np.isfinite(d).all(axis=0) for d in data]
        live = [i for i, v in enumerate(valid) if v.any()]
        thumbs = [window_thumb(d, w, self.thumb_step) for d, w in zip(data, windows, strict=True)]
        prepared = PreparedWindows(windows, valid, thumbs, live)
        if live:
            runner = self._open()
            started = time.perf_counter()
            images = [self.scene.image(data[i], windows[i].row, windows[i].col) for i in live]
            prepared.inputs = runner.prepare(images, self._scaling)
            self.model_s += time.perf_counter() - started
        return prepared

    def answer(self, prepared: PreparedWindows) -> dict[int, WindowAnswer]:
        """The model's answers of the live windows, by index in the batch (one generate call)."""
        if prepared.inputs is None or self._runner is None:
            return {}
        started = time.perf_counter()
        answers = dict(zip(prepared.live, self._runner.answer(prepared.inputs), strict=True))
        self.model_s += time.perf_counter() - started
        return answers

    def save(self, prepared: PreparedWindows, answers: dict[int, WindowAnswer]) -> None:
        """Every window of the batch into the store (no answer: skipped, all nodata)."""
        started = time.perf_counter()
        for i, win in enumerate(prepared.windows):
            self.store.save_window(win, prepared.thumbs[i], prepared.valid[i], answers.get(i))
        self.windows_run += len(prepared.live)
        self.windows_done += len(prepared.windows)
        prepared.inputs = None
        prepared.thumbs.clear()
        release_freed_memory()  # else the batches' freed arrays pile up (+80 MB a tile)
        self.write_s += time.perf_counter() - started

    def run(self, reader: PrefetchReader, on_batch: Callable[[int], None] | None = None) -> None:
        """Every batch of `reader`; `on_batch(windows in the batch)` after each is saved."""
        for windows, data in reader:
            prepared = self.prepare(windows, data)
            # The raw pixels are done with (valid, thumbs, model inputs taken): freed before the
            # next batch is read, so two batches' raw windows never sit in memory at once.
            del data
            reader.read_ahead()
            answers = self.answer(prepared)
            self.save(prepared, answers)
            del prepared, answers
            if on_batch is not None:
                on_batch(len(windows))

    def close(self) -> None:
        """Drop the model (a model loaded here by name frees its memory) and the freed heap."""
        self._runner = None
        release_freed_memory()


def scene_scaling(processor: Any, scene: SceneSource) -> FixedScaling | None:
    """One value scaling for every window, from the whole scene (`processor`: the model's
    `SkyEyeImageProcessor`): a per-band stretch of each window on its own would map a window
    of open water onto the full range, and differ across a window border. Reads the scene
    decimated only when the scaling depends on the values."""
    overview = None
    if processor.scaling_depends_on_values(scene.sensor):
        overview = scene.overview()
    scaling = processor.fixed_scaling(scene.sensor, overview)
    logger.info("%s: value scaling %s for every window", scene.label, scaling)
    return scaling


def release_freed_memory() -> None:
    """Return freed heap memory to the OS (glibc's malloc_trim; nothing elsewhere). glibc keeps
    freed blocks below its (growing) mmap threshold, such as the windows' 13 MB arrays, in the
    process, where the outputs did not reuse them: the peak RSS of a scene was at its end."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


def window_thumb(data: np.ndarray, win: SceneWindow, thumb_step: int) -> np.ndarray:
    """The window's pixels on the preview's grid (a copy: `data` may be freed)."""
    oy, ox = thumb_offsets(win.row, thumb_step), thumb_offsets(win.col, thumb_step)
    return data[:, oy::thumb_step, ox::thumb_step].astype(np.float32)
