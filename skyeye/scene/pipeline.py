"""`analyze_scene`: a whole scene at its own resolution, window by window, into one georeferenced
answer (mask COG, polygons, preview, answer.json) in an output folder.

Data path: SceneSource reads windows (the next batch is read in a thread while the model runs on
this one) -> all-nodata windows are recorded as skipped -> WindowRunner answers a batch in one
generate call -> each window's mask probability, valid pixels, preview thumbnail and answer go
to WindowStore (resumable) -> stitch_mask blends them strip by strip into the COG -> polygons,
preview and the summary are derived from the COG and the store.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from skyeye.atomic import write_text
from skyeye.errors import SceneError
from skyeye.grounding.parse import GroundedBox
from skyeye.io.gdal import ReadOptions
from skyeye.io.stac import is_stac_file, read_stac_item
from skyeye.scene.identity import dtype_label, model_identity, run_identity
from skyeye.scene.lock import RunLock
from skyeye.scene.outputs import (
    compass,
    mean_percentage,
    merge_boxes,
    most_common_phrase,
    scene_datetime,
    window_box,
    write_polygons,
    write_preview,
)
from skyeye.scene.source import SceneSource
from skyeye.scene.stitch import stitch_mask, thumb_offsets
from skyeye.scene.store import WindowStore
from skyeye.scene.windows import SceneWindow, window_layout

if TYPE_CHECKING:  # the model's modules import torch: loaded with the first live window
    from skyeye.processing.image_processor import FixedScaling
    from skyeye.scene.infer import WindowRunner

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = 512
DEFAULT_OVERLAP = 64
DEFAULT_BATCH = 8
#: Longest side of the preview PNG's composite, in pixels (before the overlay's display scale).
PREVIEW_SIZE = 1024
WORK_DIR = ".scene-work"

OUTPUT_NAMES = {
    "mask": "mask.tif",
    "geojson": "mask.geojson",
    "gpkg": "mask.gpkg",
    "preview": "preview.png",
    "answer": "answer.json",
}


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
    source: str | os.PathLike | Sequence[str | os.PathLike],
    prompt: str,
    out_dir: str | os.PathLike,
    *,
    model: Any = "skyeye-tiny",
    gsd: float | None = None,
    window: int = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
    batch: int = DEFAULT_BATCH,
    bbox: Sequence[float] | None = None,
    bbox_crs: str | None = None,
    crs: str = "4326",
    resume: bool = True,
    progress: bool = True,
    max_new_tokens: int = 64,
    force_answer: str | None = None,
    device: str = "cpu",
    dtype: Any = "auto",
    sensor: str | None = None,
    band_names: Sequence[str] | None = None,
    wavelengths: Sequence[float] | None = None,
    progress_callback: Any = None,
    read_options: ReadOptions | None = None,
) -> SceneResult:
    """Analyse a whole scene window by window and write one georeferenced answer to `out_dir`.

    Args:
        source: a raster file, a band-per-file folder, a list of band files, or a STAC item .json.
        prompt: the question asked about every window ("Show me where the water is with a mask.").
        out_dir: output folder (mask.tif COG, mask.geojson, mask.gpkg, preview.png, answer.json;
            `.scene-work/` holds the finished windows for resuming).
        model: a model name/folder, a loaded `ChatSession` or (model, processor): Ray workers
            load it once and pass it to every call.
        gsd: output pixel size in the scene CRS's units (None: native, the finest band's).
        window / overlap: window side and overlap in pixels of the output grid; the tower sees
            each window resized to its image size, the mask is resampled back to the window.
        batch: windows per model call.
        bbox / bbox_crs: analyse only this box (minx, miny, maxx, maxy) given in bbox_crs (an
            EPSG code; default the scene's CRS).
        crs: "4326" (GeoJSON in lon/lat) or "native" (the scene's CRS).
        resume: continue a run of the same scene and settings in `out_dir` (False: start over).
        progress: show a tqdm bar (windows, windows/s, time left).
        max_new_tokens: longest answer per window.
        force_answer: skip generation and take this as every window's answer (e.g.
            "<p>water</p> [SEG]"): one forward pass per batch decodes its masks.
        device / dtype: where and in which dtype a model given by name is loaded ("auto":
            float32, the LLM in bfloat16 where that is fast; see `skyeye.scene.infer.open_session`).
        progress_callback: called as f(done, total) after each batch (e.g. the demo's gr.Progress).
        read_options: GDAL decoding threads and block cache of the scene's reads (default:
            every core, 128 MiB).

    Returns a `SceneResult`. Raises `SceneError` / `RasterReadError` for bad input and
    `DiskFullError` when the disk fills (finished windows stay on disk).
    """
    if crs not in ("4326", "native"):
        raise SceneError(f"crs must be '4326' or 'native', got {crs!r}")
    if batch < 1:
        raise SceneError(f"--batch must be at least 1, got {batch}")
    if window < 1 or overlap < 0 or overlap >= window:
        raise SceneError(
            f"--overlap must be in [0, window) and --window positive, got window {window}, "
            f"overlap {overlap}"
        )
    if not prompt or not prompt.strip():
        raise SceneError(
            "the prompt is empty: ask what to find, e.g. 'Show me the water with a mask.'"
        )
    # A STAC item: read its band assets; its id and datetime go into answer.json.
    stac = None
    if isinstance(source, (str, os.PathLike)) and is_stac_file(source):
        stac = read_stac_item(source)
        source = stac.source
        band_names = band_names or stac.band_names
        known = stac.wavelengths_of(stac.band_names)
        if wavelengths is None and not isinstance(source, list) and known is not None:
            wavelengths = known
    out = Path(out_dir)
    timings = {"read": 0.0, "model": 0.0, "write": 0.0, "stitch": 0.0, "outputs": 0.0}
    start = time.perf_counter()
    with (
        SceneSource(
            source,
            gsd=gsd,
            bbox=bbox,
            bbox_crs=bbox_crs,
            sensor=sensor,
            band_names=band_names,
            wavelengths=wavelengths,
            read_options=read_options,
        ) as scene,
        RunLock(out, "skyeye.scene"),
    ):
        grid = scene.grid
        windows = window_layout(grid.height, grid.width, window, overlap)
        settings = {
            "prompt": prompt,
            "window": window,
            "overlap": overlap,
            "gsd": gsd,
            "bbox": None if bbox is None else [float(v) for v in bbox],
            "bbox_crs": bbox_crs,
            "model": model_identity(model)["label"],
            "dtype": dtype_label(model, dtype, device),
            "max_new_tokens": max_new_tokens,
            "force_answer": force_answer,
        }
        # The grid stands for the files' georeference; sensor and bands for how they are read.
        read = {"grid": scene.grid.label(), "sensor": scene.sensor, "bands": scene.band_names,
                "wavelengths": scene.wavelengths}  # fmt: skip
        identity = run_identity(prompt, model, settings | read, source)
        store = WindowStore(out / WORK_DIR, identity, resume=resume)
        thumb_step = max(1, math.ceil(max(grid.height, grid.width) / PREVIEW_SIZE))
        todo = [w for w in windows if not store.done(w.index)]
        runner = None
        scaling: FixedScaling | None = None
        run_count = skipped_now = done_now = 0
        bar = tqdm(
            total=len(windows),
            initial=len(windows) - len(todo),
            unit="win",
            desc="scene",
            disable=not progress,
            dynamic_ncols=True,
        )
        # Fixed batches of the layout (not of the windows left), so a resumed run batches each
        # window with the same neighbours as an uninterrupted one.
        chunks = [windows[i : i + batch] for i in range(0, len(windows), batch)]
        chunks = [[w for w in c if not store.done(w.index)] for c in chunks]
        chunks = [c for c in chunks if c]

        def read_chunk(chunk: list[SceneWindow]) -> tuple[list[np.ndarray], float]:
            t0 = time.perf_counter()
            data = [scene.read(w.row, w.col, w.height, w.width) for w in chunk]
            return data, time.perf_counter() - t0

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(read_chunk, chunks[0]) if chunks else None
            for k, chunk in enumerate(chunks):
                t_wait = time.perf_counter()
                data, _ = pending.result()  # type: ignore[union-attr]
                timings["read"] += time.perf_counter() - t_wait
                valid = [np.isfinite(d).all(axis=0) for d in data]
                live = [i for i, v in enumerate(valid) if v.any()]
                window_thumbs = [_thumb(d, w, thumb_step) for d, w in zip(data, chunk, strict=True)]
                prepared = None
                if live:
                    if runner is None:
                        runner = _runner(model, prompt, max_new_tokens, force_answer, device, dtype)
                        if window < runner.patch_size:
                            raise SceneError(
                                f"--window {window} is smaller than the tower's patch "
                                f"({runner.patch_size} px): use --window {runner.image_size} or more"
                            )
                        scaling = _scene_scaling(runner, scene)
                    t0 = time.perf_counter()
                    prepared = runner.prepare(
                        [scene.image(data[i], chunk[i].row, chunk[i].col) for i in live], scaling
                    )
                    timings["model"] += time.perf_counter() - t0
                # The raw pixels are done with (valid, thumbs, model inputs taken): freed before
                # the next chunk is read, so two chunks' raw windows never sit in memory at once.
                del data
                pending = pool.submit(read_chunk, chunks[k + 1]) if k + 1 < len(chunks) else None
                answers: dict[int, Any] = {}
                if prepared is not None and runner is not None:
                    t0 = time.perf_counter()
                    answers = dict(zip(live, runner.answer(prepared), strict=True))
                    timings["model"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                for i, win in enumerate(chunk):
                    _save_window(store, win, window_thumbs[i], valid[i], answers.get(i))
                del prepared, answers, window_thumbs
                _release_freed_memory()  # else the batches' freed arrays pile up (+80 MB a tile)
                timings["write"] += time.perf_counter() - t0
                run_count += len(live)
                done_now += len(chunk)
                skipped_now += len(chunk) - len(live)
                bar.update(len(chunk))
                if progress_callback is not None:
                    progress_callback(len(windows) - len(todo) + done_now, len(windows))
        bar.close()
        # ------------------------------------------------------------------ outputs
        t0 = time.perf_counter()
        # A model loaded here (given by name) is done with: its ~0.6 GB go before the outputs
        # allocate theirs, and what the windows' arrays freed goes back to the OS.
        runner = None
        _release_freed_memory()
        paths = {k: out / v for k, v in OUTPUT_NAMES.items()}
        stats = stitch_mask(
            store,
            windows,
            grid,
            overlap,
            paths["mask"],
            thumb_step,
            store.folder,
            read_options=scene.read_options,
        )
        timings["stitch"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        records = [store.record(w.index) | {"index": w.index} for w in windows]
        phrase = most_common_phrase(records)
        polygons = write_polygons(
            paths["mask"], grid, paths["geojson"], paths["gpkg"], native_crs=crs == "native"
        )
        thumbs = _assemble_thumbs(store, windows, grid, thumb_step, len(scene.band_names))
        assert stats.thumb is not None, "stitch_mask always returns the preview's mask thumbnail"
        write_preview(
            thumbs,
            stats.thumb,
            scene.band_names,
            scene.wavelengths,
            scene.sensor,
            phrase,
            paths["preview"],
        )
        answer = _summary(scene, grid, prompt, records, stats, polygons, phrase, settings)
        answer["settings"].update(batch=batch, crs=crs)
        if stac is not None:
            answer["scene"].update(id=stac.scene_id, datetime=stac.datetime)
        answer["outputs"] = {k: v.name for k, v in paths.items() if v.is_file() or k == "answer"}
        answer["run_id"] = identity["id"]
        timings["outputs"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - start
        answer["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        write_text(paths["answer"], json.dumps(answer, indent=1, ensure_ascii=False) + "\n")
    return SceneResult(
        out_dir=out,
        paths=paths,
        answer=answer,
        windows_total=len(windows),
        windows_run=run_count,
        windows_skipped=sum(1 for r in records if r.get("skipped")),
        timings=timings,
    )


def _runner(
    model: Any, prompt: str, max_new_tokens: int, force_answer: str | None, device: str, dtype: Any
):
    from skyeye.scene.infer import WindowRunner, open_session

    session = open_session(model, device=device, dtype=dtype)
    return WindowRunner(session, prompt, max_new_tokens=max_new_tokens, force_answer=force_answer)


def _scene_scaling(runner: WindowRunner, scene: SceneSource) -> FixedScaling | None:
    """One value scaling for every window, from the whole scene: a per-band stretch of each
    window on its own would map a window of open water onto the full range, and differ across
    a window border. Reads the scene decimated only when the scaling depends on the values."""
    processor = runner.processor.image_processor
    overview = None
    if processor.scaling_depends_on_values(scene.sensor):
        overview = scene.overview()
    scaling = processor.fixed_scaling(scene.sensor, overview)
    logger.info("%s: value scaling %s for every window", scene.label, scaling)
    return scaling


def _release_freed_memory() -> None:
    """Return freed heap memory to the OS (glibc's malloc_trim; nothing elsewhere). glibc keeps
    freed blocks below its (growing) mmap threshold, such as the windows' 13 MB arrays, in the
    process, where the outputs did not reuse them: the peak RSS of a scene was at its end."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


def _thumb(data: np.ndarray, win: SceneWindow, thumb_step: int) -> np.ndarray:
    """The window's pixels on the preview's grid (a copy: `data` may be freed)."""
    oy, ox = thumb_offsets(win.row, thumb_step), thumb_offsets(win.col, thumb_step)
    return data[:, oy::thumb_step, ox::thumb_step].astype(np.float32)


def _save_window(
    store: WindowStore,
    win: SceneWindow,
    thumb: np.ndarray,
    valid: np.ndarray,
    answer: Any,
) -> None:
    arrays: dict[str, np.ndarray] = {"valid": np.packbits(valid.ravel()), "thumb": thumb}
    record: dict[str, Any] = {
        "row": win.row,
        "col": win.col,
        "height": win.height,
        "width": win.width,
        "valid_pixels": int(valid.sum()),
    }
    if answer is None:
        record["skipped"] = True
    else:
        record.update(
            answer=answer.text,
            phrase=answer.phrase,
            boxes=[
                {
                    "x1": b.x1,
                    "y1": b.y1,
                    "x2": b.x2,
                    "y2": b.y2,
                    "angle": b.angle,
                    "phrase": b.phrase,
                }
                for b in answer.boxes
            ],
        )
        if answer.prob is not None:
            arrays["prob"] = answer.prob.astype(np.float16)
            record["mask_pixels"] = int(((answer.prob >= 0.5) & valid).sum())
    store.save(win.index, record, arrays)


def _assemble_thumbs(
    store: WindowStore, windows: list[SceneWindow], grid, step: int, bands: int
) -> np.ndarray:
    th, tw = -(-grid.height // step), -(-grid.width // step)
    out = np.full((bands, th, tw), np.nan, np.float32)
    for win in windows:
        thumb = store.arrays(win.index)["thumb"]
        r0 = (win.row + thumb_offsets(win.row, step)) // step
        c0 = (win.col + thumb_offsets(win.col, step)) // step
        out[:, r0 : r0 + thumb.shape[1], c0 : c0 + thumb.shape[2]] = thumb
    return out


def _summary(scene, grid, prompt, records, stats, polygons, phrase, settings) -> dict[str, Any]:
    pixel_area = grid.pixel_area_m2
    area_m2 = stats.mask_pixels * pixel_area if pixel_area is not None else polygons["area_m2"]
    share = stats.mask_pixels / stats.valid_pixels if stats.valid_pixels else 0.0
    where = None
    centroid = None
    if stats.mask_pixels:
        row = stats.row_sum / stats.mask_pixels + 0.5
        col = stats.col_sum / stats.mask_pixels + 0.5
        where = compass(row, col, grid.height, grid.width)
        t = grid.transform
        centroid = [t.c + t.a * col + t.b * row, t.f + t.d * col + t.e * row]
    boxes = []
    for r in records:
        for b in r.get("boxes") or []:
            box = GroundedBox(b["x1"], b["y1"], b["x2"], b["y2"], b.get("angle"), b.get("phrase"))
            boxes.append(window_box(box, r["row"], r["col"], r["height"], r["width"], r["index"]))
    merged = merge_boxes(boxes)
    for b in merged:
        b["bounds"] = grid.bounds_of(b["x1"], b["y1"], b["x2"], b["y2"])
    amount = mean_percentage(records)
    name = phrase or "the target"
    if stats.mask_pixels:
        text = (
            f"Found {name} over {area_m2 / 1e4:,.1f} ha ({100 * share:.2f} % of the valid "
            f"pixels), mostly in the {where} of the scene."
            if area_m2
            else f"Found {name} on {100 * share:.2f} % of the valid pixels, mostly in the {where}."
        )
    elif amount is not None:
        text = f"About {amount:g} % of the scene (mean of the windows' answers, by valid pixels)."
    elif any("mask_pixels" in r for r in records):
        text = f"No {name} found in the scene."
    else:
        answers = Counter(r["answer"] for r in records if r.get("answer"))
        text = answers.most_common(1)[0][0] if answers else "No window held valid pixels."
    return {
        "answer": text,
        "prompt": prompt,
        "found": phrase,
        "mask": {
            "pixels": stats.mask_pixels,
            "valid_pixels": stats.valid_pixels,
            "share_of_valid": round(share, 6),
            "area_m2": round(float(area_m2), 2) if area_m2 is not None else None,
            "area_ha": round(float(area_m2) / 1e4, 4) if area_m2 is not None else None,
            "position": where,
            "centroid": centroid,
            "polygons": polygons["count"],
        },
        "amount_percent": amount,
        "boxes": merged,
        "scene": {
            "source": scene.label,
            "id": Path(scene.label).stem,
            "datetime": scene_datetime(scene.label),
            "crs": str(grid.crs) if grid.crs is not None else None,
            "width": grid.width,
            "height": grid.height,
            "transform": list(grid.transform)[:6],
            "pixel_size": list(grid.pixel_size),
            "bands": list(scene.band_names),
            "sensor": scene.sensor,
        },
        "windows": [
            {
                k: r.get(k)
                for k in (
                    "index",
                    "row",
                    "col",
                    "height",
                    "width",
                    "skipped",
                    "answer",
                    "phrase",
                    "valid_pixels",
                    "mask_pixels",
                )
                if r.get(k) is not None
            }
            for r in records
        ],
        "settings": dict(settings),
    }
