"""`analyze_scene`: a whole scene at its own resolution, window by window, into one georeferenced
answer (mask COG, polygons, preview, answer.json) in an output folder.

The driver composes the parts, each its own unit: `SceneConfig` (config.py) -> `SceneSource`
(source.py) on one output grid -> `window_layout` (windows.py) cut into fixed batches ->
`PrefetchReader` (reader.py: the next batch is read in a thread while the model runs on this
one) -> `SceneRunner` (runner.py: all-nodata windows recorded as skipped, the others answered
in one generate call per batch) -> `WindowStore` (store.py, resumable) -> `SceneWriter`
(writer.py: `stitch_mask` blends the windows strip by strip into the COG; polygons, preview and
answer.json from the COG and the store).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from skyeye.errors import SceneError
from skyeye.io.stac import is_stac_file, read_stac_item
from skyeye.scene.config import DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_WINDOW, SceneConfig
from skyeye.scene.identity import run_identity
from skyeye.scene.lock import RunLock
from skyeye.scene.reader import PrefetchReader
from skyeye.scene.runner import SceneRunner
from skyeye.scene.source import SceneSource
from skyeye.scene.store import WindowStore
from skyeye.scene.windows import pending_batches, window_layout
from skyeye.scene.writer import OUTPUT_NAMES, SceneWriter

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_OVERLAP",
    "DEFAULT_WINDOW",
    "OUTPUT_NAMES",
    "SceneConfig",
    "SceneResult",
    "analyze_scene",
]

logger = logging.getLogger(__name__)

WORK_DIR = ".scene-work"

Source = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass
class SceneResult:
    """What `analyze_scene` wrote and found.

    paths: output name -> path (mask, geojson, gpkg, preview, answer; no geojson file for a
    scene without CRS, see `write_polygons`). answer: the content of
    answer.json. windows_run: windows the model ran on in this call (0 when all were already
    done); windows_skipped: all-nodata windows; timings: seconds per stage.
    """

    out_dir: Path
    paths: dict[str, Path]
    answer: dict[str, Any]
    windows_total: int
    windows_run: int
    windows_skipped: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.answer["answer"]


def analyze_scene(
    source: Source,
    prompt: str,
    out_dir: str | os.PathLike,
    config: SceneConfig | None = None,
    *,
    model: Any = "skyeye-tiny",
    progress_callback: Callable[[int, int], None] | None = None,
    **overrides: Any,
) -> SceneResult:
    """Analyse a whole scene window by window and write one georeferenced answer to `out_dir`.

    Args:
        source: a raster file, a band-per-file folder, a list of band files, or a STAC item .json.
        prompt: the question asked about every window ("Show me where the water is with a mask.").
        out_dir: output folder (mask.tif COG, mask.geojson, mask.gpkg, preview.png, answer.json;
            `.scene-work/` holds the finished windows for resuming).
        config: window, overlap, batch, gsd, bbox, crs, dtype... (`SceneConfig`; default its
            defaults). `overrides`: `SceneConfig` fields replaced in it (`window=256`).
        model: a model name/folder, a loaded `ChatSession` or (model, processor): Ray workers
            load it once and pass it to every call.
        progress_callback: called as f(done, total) after each batch (e.g. the demo's gr.Progress).

    Returns a `SceneResult`. Raises `SceneError` / `RasterReadError` for bad input and
    `DiskFullError` when the disk fills (finished windows stay on disk).
    """
    config = (config or SceneConfig()).replace(**overrides)
    if not prompt or not prompt.strip():
        raise SceneError(
            "the prompt is empty: ask what to find, e.g. 'Show me the water with a mask.'"
        )
    source, config, scene_info = _stac_source(source, config)
    out = Path(out_dir)
    timings = dict.fromkeys(("read", "model", "write", "stitch", "outputs"), 0.0)
    started = time.perf_counter()
    with _open_scene(source, config) as scene, RunLock(out, "skyeye.scene"):
        grid = scene.grid
        windows = window_layout(grid.height, grid.width, config.window, config.overlap)
        settings = config.settings(prompt, model)
        # The grid stands for the files' georeference; sensor and bands for how they are read.
        read = {"grid": grid.label(), "sensor": scene.sensor, "bands": scene.band_names,
                "wavelengths": scene.wavelengths}  # fmt: skip
        identity = run_identity(prompt, model, settings | read, source)
        store = WindowStore(out / WORK_DIR, identity, resume=config.resume)
        runner = SceneRunner(model, prompt, config, scene, store)
        done_before = sum(store.done(w.index) for w in windows)
        bar = tqdm(total=len(windows), initial=done_before, unit="win", desc="scene",
                   disable=not config.progress, dynamic_ncols=True)  # fmt: skip

        def on_batch(n: int) -> None:
            bar.update(n)
            if progress_callback is not None:
                progress_callback(done_before + runner.windows_done, len(windows))

        batches = pending_batches(windows, config.batch, store.done)
        with PrefetchReader(lambda w: scene.read(w.row, w.col, w.height, w.width), batches) as r:
            runner.run(r, on_batch)
        bar.close()
        runner.close()  # a model loaded here goes before the outputs allocate theirs
        timings.update(read=r.wait_s, model=runner.model_s, write=runner.write_s)
        writer = SceneWriter(out, scene, config, runner.thumb_step)
        done = writer.write(store, windows, settings, identity["id"], timings, started, scene_info)
    skipped = sum(1 for rec in done.records if rec.get("skipped"))
    return SceneResult(out, done.paths, done.answer, len(windows), runner.windows_run, skipped,
                       timings)  # fmt: skip


def _stac_source(source: Source, config: SceneConfig) -> tuple[Source, SceneConfig, dict]:
    """A STAC item's band assets, band names and wavelengths (the config's win), and its id and
    datetime for answer.json; any other source as it is."""
    if not (isinstance(source, (str, os.PathLike)) and is_stac_file(source)):
        return source, config, {}
    stac = read_stac_item(source)
    band_names, wavelengths = config.band_names or stac.band_names, config.wavelengths
    known = stac.wavelengths_of(stac.band_names)
    if wavelengths is None and not isinstance(stac.source, list) and known is not None:
        wavelengths = known
    config = config.replace(band_names=band_names, wavelengths=wavelengths)
    return stac.source, config, {"id": stac.scene_id, "datetime": stac.datetime}


def _open_scene(source: Source, config: SceneConfig) -> SceneSource:
    return SceneSource(
        source,
        gsd=config.gsd,
        bbox=config.bbox,
        bbox_crs=config.bbox_crs,
        sensor=config.sensor,
        band_names=config.band_names,
        wavelengths=config.wavelengths,
        read_options=config.read_options,
    )
