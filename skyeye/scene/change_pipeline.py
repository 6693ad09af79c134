"""`analyze_scene_pair`: what changed between two dates of a whole scene, window by window.

The single-date driver's parts with a pair in place of the scene: `PairSource` (pair.py: the
after date read onto the before date's grid, window by window) -> `window_layout` in fixed
batches -> `PrefetchReader` (both dates of the next batch read while the model runs) ->
`PairRunner` (below: all-nodata windows skipped, the others through `ChangeWindowRunner`: the
change mask from the change decoder, each date's class masks and clouds) -> `WindowStore` (resumable
under the run's identity: both dates' files, the dates, the prompt, model and settings) ->
`write_change_outputs` (change_writer.py). One run per output folder (`RunLock`), every output
written under a temporary name and renamed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from skyeye.chat.change_answer import read_change_question
from skyeye.chat.transitions import TRANSITION_CLASSES, named_classes
from skyeye.errors import SceneError
from skyeye.grounding.clouds import (
    CLOUDS_BY_RULE,
    cloud_rule_for,
    clouds_method,
)
from skyeye.io.image import RasterImage
from skyeye.processing.image_processor import FixedScaling
from skyeye.scene.change_context import run_context_pass
from skyeye.scene.change_infer import ChangeWindowRunner, change_answer
from skyeye.scene.change_writer import write_change_outputs
from skyeye.scene.config import SceneConfig
from skyeye.scene.identity import run_identity, source_files
from skyeye.scene.infer import image_processor_of, mask_classes_of
from skyeye.scene.lock import RunLock
from skyeye.scene.pair import PairSource
from skyeye.scene.pipeline import WORK_DIR, SceneResult, Source
from skyeye.scene.reader import PrefetchReader
from skyeye.scene.runner import PreparedWindows, SceneRunner, scene_scaling, window_thumb
from skyeye.scene.store import WindowStore
from skyeye.scene.windows import SceneWindow, pending_batches, window_layout

__all__ = ["PairRunner", "analyze_scene_pair", "transition_names"]

logger = logging.getLogger(__name__)


def transition_names(
    prompt: str, phrase: str, known: Sequence[str]
) -> tuple[list[str], list[str], bool]:
    """What a change question is measured on, by the chat's rule
    (`skyeye.chat.transitions.transitions_of`): (the transition classes reported: those the
    question or its change ``phrase`` names, else every one the decoder outlines; the decoder
    phrases asked on each date: every known class, whatever is reported, since a [SEG]'s state
    reads the phrases asked before it; general). Clouds come from the spectral test or not at
    all (`scene_cloud_method`), never from the decoder."""
    names = named_classes(f"{prompt} {phrase}")
    general = not names
    names = [n for n in (names or TRANSITION_CLASSES) if TRANSITION_CLASSES[n] in known]
    asked = [c for c in TRANSITION_CLASSES.values() if c in known]
    return names, asked, general


def scene_cloud_method(pair: PairSource, scalings: Sequence[FixedScaling | None]) -> str | None:
    """How a pair's clouds are found without the decoder, decided once for the scene from each
    date's value scaling, sensor and bands (`skyeye.grounding.clouds.clouds_method`): the
    spectral test, "not applicable (SAR)", or None (no cloud is masked)."""
    if any(s is None for s in scalings):  # scaled window by window: no one reflectance scale
        return None
    rules = [
        cloud_rule_for(s.name, src.sensor, src.wavelengths)  # type: ignore[union-attr]
        for s, src in zip(scalings, (pair.before, pair.after), strict=True)
    ]
    return clouds_method(rules)


class PairRunner(SceneRunner):
    """`SceneRunner` over window pairs: `prepare` splits each window's stacked pixels (before
    bands, then after bands) into a dated pair, `answer` runs `ChangeWindowRunner`."""

    def __init__(
        self,
        model: Any,
        prompt: str,
        config: SceneConfig,
        pair: PairSource,
        store: WindowStore,
        phrases: list[str],
        phrase: str,
        scalings: tuple[FixedScaling | None, FixedScaling | None],
        spectral_clouds: bool = False,
    ) -> None:
        super().__init__(model, prompt, config, pair.before, store)
        self.pair, self.phrases, self.phrase = pair, phrases, phrase
        self.n_before = len(pair.before.band_names)
        self._change: ChangeWindowRunner | None = None
        self.scalings, self.spectral_clouds = scalings, spectral_clouds

    def open_change(self) -> ChangeWindowRunner:
        if self._change is None:
            from skyeye.scene.infer import open_session

            c = self.config
            session = open_session(self.model, device=c.device, dtype=c.dtype)
            runner = ChangeWindowRunner(
                session, self.prompt, self.pair.dates, self.phrases, phrase=self.phrase,
                spectral_clouds=self.spectral_clouds,
            )  # fmt: skip
            if c.window < runner.patch_size:
                raise SceneError(
                    f"--window {c.window} is smaller than the tower's patch "
                    f"({runner.patch_size} px): use a larger --window"
                )
            self._change = runner
        return self._change

    def dated(self, data: np.ndarray, win: SceneWindow) -> tuple[RasterImage, RasterImage]:
        before, after = self.pair.before, self.pair.after
        first = before.image(data[: self.n_before], win.row, win.col)
        second = dataclasses.replace(
            after.image(data[self.n_before :], win.row, win.col),
            crs=first.crs,
            transform=first.transform,
            datetime=self.pair.dates[1],
        )
        return dataclasses.replace(first, datetime=self.pair.dates[0]), second

    def prepare(self, windows: list[SceneWindow], data: list[np.ndarray]) -> PreparedWindows:
        """As `SceneRunner.prepare` for stacked pairs (C_before + C_after, h, w); the preview
        thumbnails are of the after date."""
        valid = [np.isfinite(d).all(axis=0) for d in data]
        live = [i for i, v in enumerate(valid) if v.any()]
        step = self.thumb_step
        thumbs = [
            window_thumb(d[self.n_before :], w, step) for d, w in zip(data, windows, strict=True)
        ]
        prepared = PreparedWindows(windows, valid, thumbs, live)
        if live:
            runner = self.open_change()
            started = time.perf_counter()
            pairs = [self.dated(data[i], windows[i]) for i in live]
            prepared.inputs = runner.prepare(pairs, self.scalings)
            self.model_s += time.perf_counter() - started
        return prepared

    def answer(self, prepared: PreparedWindows) -> dict[int, Any]:
        if prepared.inputs is None or self._change is None:
            return {}
        started = time.perf_counter()
        answers = dict(zip(prepared.live, self._change.answer(prepared.inputs), strict=True))
        self.model_s += time.perf_counter() - started
        return answers

    def close(self) -> None:
        self._change = None
        super().close()


def analyze_scene_pair(
    before: Source,
    after: Source,
    prompt: str,
    out_dir: str | os.PathLike,
    config: SceneConfig | None = None,
    *,
    dates: Sequence[str | None] | None = None,
    model: Any = "skyeye-tiny",
    progress_callback: Callable[[int, int], None] | None = None,
    **overrides: Any,
) -> SceneResult:
    """What changed between `before` and `after` (two dates of one place), over the whole
    scene on `before`'s grid: change.tif (COG), change.geojson / change.gpkg (polygons with
    areas), preview.png (the after date with the change drawn), answer.json (the change's
    area, per-class transitions, dates, overlap).

    `dates`: per image an ISO date or None (the file's own). `model` needs a change decoder
    (`config.mask_change`). Other arguments as `skyeye.scene.analyze_scene`.

    Raises NoOverlapError (footprints apart), ValueError (dates backwards), SceneError /
    RasterReadError for other bad input; finished windows stay for a resumed run.
    """
    config = (config or SceneConfig()).replace(**overrides)
    if not prompt or not prompt.strip():
        raise SceneError("the prompt is empty: ask what changed, e.g. 'What changed?'")
    out = Path(out_dir)
    known = mask_classes_of(model)
    question = read_change_question(prompt)
    if question is None:
        raise SceneError(
            f"{prompt!r} does not ask about change: with two --image ask e.g. 'What changed?'"
        )
    timings = dict.fromkeys(("read", "model", "write", "stitch", "outputs"), 0.0)
    started = time.perf_counter()
    pair = PairSource(
        before, after, dates=dates, gsd=config.gsd, bbox=config.bbox, bbox_crs=config.bbox_crs,
        sensor=config.sensor, band_names=config.band_names, wavelengths=config.wavelengths,
        read_options=config.read_options,
    )  # fmt: skip
    with pair, RunLock(out, "skyeye.scene"):
        grid = pair.grid
        # Each date's scaling from its whole scene, once: the windows' model inputs and the
        # cloud rule's reflectance read the same values.
        proc = image_processor_of(model)
        scalings = (scene_scaling(proc, pair.before), scene_scaling(proc, pair.after))
        cloud_method = scene_cloud_method(pair, scalings)
        names, phrases, general = transition_names(prompt, question.phrase, known)
        windows = window_layout(grid.height, grid.width, config.window, config.overlap)
        settings = config.settings(prompt, model) | {
            "change_answer": change_answer(question.phrase), "dates": list(pair.dates),
            "classes": phrases, "cloud_method": cloud_method,
            "change_context": config.change_context,
        }  # fmt: skip
        read = {
            "grid": grid.label(),
            "sensors": [pair.before.sensor, pair.after.sensor],
            "bands": [pair.before.band_names, pair.after.band_names],
            "wavelengths": [pair.before.wavelengths, pair.after.wavelengths],
        }
        files = [*source_files(before), *source_files(after)]
        identity = run_identity(prompt, model, settings | read, files)
        store = WindowStore(out / WORK_DIR, identity, resume=config.resume)
        runner = PairRunner(
            model, prompt, config, pair, store, phrases, question.phrase, scalings,
            spectral_clouds=cloud_method == CLOUDS_BY_RULE,
        )  # fmt: skip
        done_before = sum(store.done(w.index) for w in windows)
        bar = tqdm(total=len(windows), initial=done_before, unit="win", desc="change",
                   disable=not config.progress, dynamic_ncols=True)  # fmt: skip

        def on_batch(n: int) -> None:
            bar.update(n)
            if progress_callback is not None:
                progress_callback(done_before + runner.windows_done, len(windows))

        def read_pair(w: SceneWindow) -> np.ndarray:
            # One array per window (before bands, then after bands) for the prefetching reader.
            return np.concatenate(pair.read(w.row, w.col, w.height, w.width))

        # A pair is two images: `batch` images per model call, as a single-date run's memory.
        batches = pending_batches(windows, max(1, config.batch // 2), store.done)
        with PrefetchReader(read_pair, batches) as r:
            runner.run(r, on_batch)
        bar.close()
        started_context = time.perf_counter()
        seen_again = run_context_pass(
            runner, windows, config.change_context, progress=config.progress
        )
        runner.model_s += time.perf_counter() - started_context
        runner.close()  # a model loaded here goes before the outputs allocate theirs
        timings.update(read=r.wait_s, model=runner.model_s, write=runner.write_s)
        written = {"batch": config.batch, "crs": config.crs, "context_windows": seen_again}
        paths, answer = write_change_outputs(
            out, pair, store, windows, settings | written,
            names, phrases, question.phrase, cloud_method, general=general, overlap=config.overlap, thumb_step=runner.thumb_step,
            crs=config.crs, run_id=identity["id"], timings=timings, started=started,
        )  # fmt: skip
    skipped = sum(1 for w in answer["windows"] if w.get("skipped"))
    return SceneResult(out, paths, answer, len(windows), runner.windows_run, skipped, timings)
