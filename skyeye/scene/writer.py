"""The scene's outputs from its finished windows: the stitched mask COG, polygons (GeoJSON,
GeoPackage), the preview PNG and answer.json (written last: its presence means a finished run).

Everything here reads the window store, never the scene's pixels again: the preview is
assembled from the windows' thumbnails, the answer from their records.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skyeye.atomic import write_text
from skyeye.chat.measured import asked_unit, format_area
from skyeye.chat.readable import render_readable
from skyeye.grounding.parse import GroundedBox
from skyeye.scene.config import SceneConfig
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
from skyeye.scene.source import Grid, SceneSource
from skyeye.scene.stitch import MaskStats, stitch_mask, thumb_offsets
from skyeye.scene.store import WindowStore
from skyeye.scene.windows import SceneWindow

OUTPUT_NAMES = {
    "mask": "mask.tif",
    "geojson": "mask.geojson",
    "gpkg": "mask.gpkg",
    "preview": "preview.png",
    "answer": "answer.json",
}


@dataclass
class SceneOutputs:
    """What `SceneWriter.write` wrote: output name -> path, answer.json's content, and the
    windows' records (in layout order)."""

    paths: dict[str, Path]
    answer: dict[str, Any]
    records: list[dict[str, Any]]


class SceneWriter:
    """Writes a finished run's outputs into `out` (see the module docstring)."""

    def __init__(self, out: Path, scene: SceneSource, config: SceneConfig, thumb_step: int) -> None:
        self.out, self.scene, self.config, self.thumb_step = out, scene, config, thumb_step

    def write(
        self,
        store: WindowStore,
        windows: list[SceneWindow],
        settings: dict[str, Any],
        run_id: str,
        timings: dict[str, float],
        started: float,
        scene_info: dict[str, Any] | None = None,
    ) -> SceneOutputs:
        """Stitch, polygonise, preview and summarise; `settings` (`SceneConfig.settings`) go
        into answer.json with the batch and crs, `run_id` (the run identity's short hash), `scene_info` (a STAC item's id and datetime)
        over its "scene"; `timings` gets "stitch", "outputs" and "total" (since `started`)."""
        scene, grid, config = self.scene, self.scene.grid, self.config
        t0 = time.perf_counter()
        paths = {k: self.out / v for k, v in OUTPUT_NAMES.items()}
        stats = stitch_mask(
            store,
            windows,
            grid,
            config.overlap,
            paths["mask"],
            self.thumb_step,
            store.folder,
            read_options=scene.read_options,
        )
        timings["stitch"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        records = [store.record(w.index) | {"index": w.index} for w in windows]
        phrase = most_common_phrase(records)
        polygons = write_polygons(
            paths["mask"], grid, paths["geojson"], paths["gpkg"], native_crs=config.crs == "native"
        )
        thumbs = assemble_thumbs(store, windows, grid, self.thumb_step, len(scene.band_names))
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
        answer = summary(scene, settings["prompt"], records, stats, polygons, phrase, settings)
        answer["settings"].update(batch=config.batch, crs=config.crs)
        if scene_info:
            answer["scene"].update(scene_info)
        answer["outputs"] = {k: v.name for k, v in paths.items() if v.is_file() or k == "answer"}
        answer["run_id"] = run_id
        timings["outputs"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - started
        answer["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        write_text(paths["answer"], json.dumps(answer, indent=1, ensure_ascii=False) + "\n")
        return SceneOutputs(paths, answer, records)


def assemble_thumbs(
    store: WindowStore, windows: list[SceneWindow], grid: Grid, step: int, bands: int
) -> np.ndarray:
    """(bands, th, tw) float32 preview composite from the windows' thumbnails (NaN: nodata)."""
    th, tw = -(-grid.height // step), -(-grid.width // step)
    out = np.full((bands, th, tw), np.nan, np.float32)
    for win in windows:
        thumb = store.arrays(win.index)["thumb"]
        r0 = (win.row + thumb_offsets(win.row, step)) // step
        c0 = (win.col + thumb_offsets(win.col, step)) // step
        out[:, r0 : r0 + thumb.shape[1], c0 : c0 + thumb.shape[2]] = thumb
    return out


def summary(
    scene: SceneSource,
    prompt: str,
    records: list[dict[str, Any]],
    stats: MaskStats,
    polygons: dict[str, Any],
    phrase: str | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """answer.json's content (without outputs, run_id and timings): the one-sentence answer,
    the mask's figures, merged boxes, the scene and every window's answer."""
    grid = scene.grid
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
    # The windows' own percentages are the LLM's words: where a mask was drawn, the measured
    # share is the amount, and a mean of those words beside it contradicted it (1 % said, 17.6 %
    # measured).
    drawn = any("mask_pixels" in r for r in records)
    amount = None if drawn else mean_percentage(records)
    name = phrase or "the target"
    if stats.mask_pixels:
        text = (
            f"Found {name} over {format_area(area_m2, asked_unit(prompt))} "
            f"({100 * share:.2f} % of the valid pixels), mostly in the {where} of the scene."
            if area_m2
            else f"Found {name} on {100 * share:.2f} % of the valid pixels, mostly in the {where}."
        )
    elif amount is not None:
        text = f"About {amount:g} % of the scene (mean of the windows' answers, by valid pixels)."
    elif drawn:
        text = f"No {name} found in the scene."
    else:
        answers = Counter(r["answer"] for r in records if r.get("answer"))
        text = answers.most_common(1)[0][0] if answers else "No window held valid pixels."
    window_keys = ("index", "row", "col", "height", "width", "skipped", "answer", "phrase",
                   "valid_pixels", "mask_pixels")  # fmt: skip
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
        "windows": [_window_entry(r, window_keys) for r in records],
        "settings": dict(settings),
    }


def _window_entry(record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """One window of answer.json: its fields, and its answer as the sentence people read
    (``text``) beside the model's own grammar (``answer``)."""
    entry = {k: record.get(k) for k in keys if record.get(k) is not None}
    answer = entry.get("answer")
    if isinstance(answer, str) and answer:
        entry["text"] = render_readable(answer)
    return entry
