"""A two-date run's outputs: the change mask COG, its polygons, the preview, answer.json with the
change's area and each class's transitions.

One pass over the finished windows, a strip of rows at a time (`skyeye.scene.stitch`): each
strip blends the windows' change probability and their per-date class masks (a weighted vote)
with the single-date scene's overlap ramp, writes the change mask and hands the strip to a
`TransitionTally`, which measures gained / lost per class inside the change mask by the chat's
rule (`skyeye.chat.transitions.measure_transitions`), pixels with cloud or no data on either
date left out: the clouds of the spectral test (each window's, blended as the other layers;
none where it cannot read the dates). A pixel is counted once per class in one strip, so the transitions of a class add
up to at most the change pixels compared, and gained and lost never share a pixel.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from skyeye.atomic import write_text
from skyeye.chat.measured import asked_unit, format_area
from skyeye.chat.transitions import (
    CLOUDS_UNMASKED,
    TRANSITION_CLASSES,
    left_out_words,
    measure_transitions,
    named_in_general,
    no_class_moved,
    transition_amount,
)
from skyeye.grounding.clouds import CLOUDS_BY_RULE
from skyeye.grounding.geo import mask_area
from skyeye.io.dates import date_label
from skyeye.scene.outputs import compass, write_polygons, write_preview
from skyeye.scene.pair import PairSource
from skyeye.scene.stitch import INSIDE, NODATA, stitch_mask
from skyeye.scene.store import WindowStore
from skyeye.scene.windows import SceneWindow
from skyeye.scene.writer import assemble_thumbs

CHANGE_OUTPUTS = {
    "mask": "change.tif",
    "geojson": "change.geojson",
    "gpkg": "change.gpkg",
    "preview": "preview.png",
    "answer": "answer.json",
}
#: Rows blended at a time: 1 + 2 x (classes) (+ 2 rule clouds) layers of the scene's width
#: (13 x 128 x 10980 float32 = 73 MB for a full tile's six phrases).
STRIP_ROWS = 128


def pair_layers(n_phrases: int, rule_clouds: bool = False):
    """The blend layers of a pair window: change probability, then the before and the after
    date's class masks as 0/1, NaN for a class the window did not draw, then with
    ``rule_clouds`` the before and after date's clouds by the spectral test as 0/1 (None for a
    window without them)."""

    def layers(arrays: dict[str, np.ndarray], win: SceneWindow) -> np.ndarray | None:
        if "prob" not in arrays or "classes" not in arrays:
            return None
        if rule_clouds and "clouds" not in arrays:
            return None
        size = 2 * n_phrases * win.height * win.width
        bits = np.unpackbits(arrays["classes"])[:size].reshape(-1, win.height, win.width)
        parts = [arrays["prob"][None].astype(np.float32), bits.astype(np.float32)]
        if rule_clouds:
            cloud = np.unpackbits(arrays["clouds"])[: 2 * win.height * win.width]
            parts.append(cloud.reshape(2, win.height, win.width).astype(np.float32))
        out = np.concatenate(parts)
        drawn = np.tile(arrays["classes_drawn"], 2)  # before's phrases, then after's
        out[1 : 1 + 2 * n_phrases][~drawn] = np.nan  # not drawn (no change here): no opinion
        return out

    return layers


@dataclass
class TransitionTally:
    """Sums, over the strips, the change mask's area inside the compared pixels (data and no
    cloud on both dates) and each class's gained / lost there (pixels and m²; m² None without
    a CRS). Called by `stitch_mask` with each strip's mask before it is written: pixels not
    compared become nodata in it. cloud_method: how clouds were found (`skyeye.grounding.clouds`: with the spectral test
    the last two layers are each date's rule clouds)."""

    names: list[str]
    asked: list[str]
    transform: Affine
    crs: Any
    cloud_method: str | None = None
    change_px: int = 0
    change_m2: float | None = 0.0
    valid_px: int = 0
    compared_px: int = 0
    left_out_px: int = 0
    total_px: int = 0
    classes: dict[str, dict[str, list]] = field(default_factory=dict)

    def __call__(self, r0: int, blended: np.ndarray, valid: np.ndarray, mask: np.ndarray) -> None:
        n = len(self.asked)
        before, after = blended[1 : 1 + n] >= 0.5, blended[1 + n : 1 + 2 * n] >= 0.5
        compared = valid.copy()
        if self.cloud_method == CLOUDS_BY_RULE:
            compared &= ~(blended[1 + 2 * n] >= 0.5) & ~(blended[2 + 2 * n] >= 0.5)
        # As the chat's change answer: the mask says only what was compared; the rest of the
        # valid pixels (a cloud on either date) is written as nodata, not as "no change".
        self.left_out_px += int((mask[valid & ~compared] == INSIDE).sum())
        mask[valid & ~compared] = NODATA
        change = mask == INSIDE
        geo = self.crs is not None
        t = self.transform @ Affine.translation(0, r0) if geo else None
        area = mask_area(change, transform=t, crs=self.crs if geo else None, valid=compared)
        self.change_px += area.pixels
        if area.m2 is None or self.change_m2 is None:
            self.change_m2 = None
        else:
            self.change_m2 += area.m2
        self.valid_px += int(valid.sum())
        self.compared_px += int(compared.sum())
        self.total_px += valid.size
        measured = measure_transitions(
            change,
            {name: before[self.asked.index(TRANSITION_CLASSES[name])] for name in self.names},
            {name: after[self.asked.index(TRANSITION_CLASSES[name])] for name in self.names},
            compared,
            transform=t,
            crs=self.crs if geo else None,
        )
        for tr in measured:
            tally = self.classes.setdefault(tr.name, {"gained": [0, 0.0], "lost": [0, 0.0]})
            for key, part in (("gained", tr.gained), ("lost", tr.lost)):
                tally[key][0] += part.pixels
                tally[key][1] = None if part.m2 is None else (tally[key][1] or 0.0) + part.m2

    def figures(self, general: bool) -> list[dict[str, Any]]:
        """Per class measured {"name", "gained", "lost", "said"}, gained / lost each {"pixels",
        "share_of_compared", "area_m2", "area_ha"}; "said": in the answer's sentence (for a
        general question only the classes `named_in_general` names, as the chat says them)."""
        out = []
        for name in self.names:
            entry: dict[str, Any] = {"name": name}
            for key in ("gained", "lost"):
                px, m2 = self.classes.get(name, {}).get(key, [0, None])
                entry[key] = {
                    "pixels": int(px),
                    "share_of_compared": round(px / self.compared_px, 6) if self.compared_px else 0,
                    "area_m2": None if m2 is None else round(float(m2), 2),
                    "area_ha": None if m2 is None else round(float(m2) / 1e4, 4),
                }
            entry["said"] = not general or any(
                named_in_general(entry[k]["pixels"], self.change_px, self.compared_px)
                for k in ("gained", "lost")
            )
            out.append(entry)
        return out


def _said(part: dict[str, Any], unit: str | None) -> str:
    return transition_amount(part["area_m2"], part["share_of_compared"], unit)


def change_sentence(
    pair: PairSource,
    tally: TransitionTally,
    classes: list[dict],
    where: str | None,
    phrase: str,
    general: bool = True,
    unit: str | None = None,
) -> str:
    """The answer: the change's area between the dates, its transitions as the chat words them
    ("water gained 312 ha, water lost 4.0 ha"), what was left out, and a partial overlap."""
    days = [date_label(d) for d in pair.dates]
    between = f" between {days[0]} and {days[1]}" if all(days) else ""
    share = tally.change_px / tally.compared_px if tally.compared_px else 0.0
    if tally.change_px:
        size = f"over {format_area(tally.change_m2, unit)} " if tally.change_m2 else "on "
        text = (
            f"Found {phrase}{between} {size}({100 * share:.2f} % of the compared area), "
            f"mostly in the {where} of the scene."
        )
    else:
        text = f"No {phrase} found{between}."
    said = [c for c in classes if c["said"]]
    if said:
        parts = [
            f"{c['name']} gained {_said(c['gained'], unit)}, "
            f"{c['name']} lost {_said(c['lost'], unit)}"
            for c in said
        ]
        text += " Measured on the masks: " + "; ".join(parts) + "."
    elif tally.change_px:
        text += f" Measured on the masks: {no_class_moved(general)}."
    left = 1.0 - tally.compared_px / tally.total_px if tally.total_px else 0.0
    if left > 0:
        text += f" {100 * left:.1f}% of the area ({left_out_words(tally.cloud_method)}) left out."
    if tally.cloud_method is None:
        text += f" {CLOUDS_UNMASKED[:1].upper()}{CLOUDS_UNMASKED[1:]}."
    if pair.note:
        text += f" Note: {pair.note}."
    return text


def write_change_outputs(
    out: Path,
    pair: PairSource,
    store: WindowStore,
    windows: list[SceneWindow],
    settings: dict[str, Any],
    names: list[str],
    asked: list[str],
    phrase: str,
    cloud_method: str | None,
    *,
    general: bool,
    overlap: int,
    thumb_step: int,
    crs: str,
    run_id: str,
    timings: dict[str, float],
    started: float,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Stitch the change mask with its transitions, polygonise, preview; answer.json last."""
    grid = pair.grid
    paths = {k: out / v for k, v in CHANGE_OUTPUTS.items()}
    t0 = time.perf_counter()
    tally = TransitionTally(names, asked, grid.transform, grid.crs, cloud_method)
    n, rule = len(asked), cloud_method == CLOUDS_BY_RULE
    stats = stitch_mask(
        store, windows, grid, overlap, paths["mask"], thumb_step, store.folder,
        read_options=pair.before.read_options, layers=pair_layers(n, rule),
        n_layers=1 + 2 * n + 2 * rule, strip=STRIP_ROWS, on_strip=tally,
    )  # fmt: skip
    timings["stitch"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    polygons = write_polygons(
        paths["mask"], grid, paths["geojson"], paths["gpkg"], native_crs=crs == "native"
    )
    after = pair.after
    thumbs = assemble_thumbs(store, windows, grid, thumb_step, len(after.band_names))
    assert stats.thumb is not None
    write_preview(thumbs, stats.thumb, after.band_names, after.wavelengths, after.sensor,
                  phrase, paths["preview"])  # fmt: skip
    where = None
    if stats.mask_pixels:
        row, col = stats.row_sum / stats.mask_pixels + 0.5, stats.col_sum / stats.mask_pixels + 0.5
        where = compass(row, col, grid.height, grid.width)
    classes = tally.figures(general)
    records = [store.record(w.index) | {"index": w.index} for w in windows]
    keys = ("index", "row", "col", "height", "width", "skipped", "valid_pixels", "mask_pixels")
    answer: dict[str, Any] = {
        "answer": change_sentence(
            pair, tally, classes, where, phrase, general, asked_unit(settings["prompt"])
        ),
        "prompt": settings["prompt"],
        "found": phrase,
        "dates": list(pair.dates),
        "overlap": round(pair.overlap, 6),
        "note": pair.note,
        "change": {
            "pixels": tally.change_px,
            "compared_pixels": tally.compared_px,
            "valid_pixels": tally.valid_px,
            "share_of_compared": (
                round(tally.change_px / tally.compared_px, 6) if tally.compared_px else 0
            ),
            "area_m2": None if tally.change_m2 is None else round(tally.change_m2, 2),
            "area_ha": None if tally.change_m2 is None else round(tally.change_m2 / 1e4, 4),
            "position": where,
            "polygons": polygons["count"],
            "polygon_area_m2": polygons["area_m2"],
            "area_method": polygons["area_method"],
        },
        "transitions": {
            "classes": classes,
            "measured": names,
            "change_pixels_left_out": tally.left_out_px,
            "left_out_share": round(1 - tally.compared_px / tally.total_px, 6)
            if tally.total_px
            else 0,
            "cloud_masked": cloud_method is not None,
            "cloud_method": cloud_method,
            "general": general,
        },
        "scene": {
            "before": pair.before.label,
            "after": pair.after.label,
            "crs": str(grid.crs) if grid.crs is not None else None,
            "width": grid.width,
            "height": grid.height,
            "transform": list(grid.transform)[:6],
            "bands": {"before": list(pair.before.band_names), "after": list(after.band_names)},
            "sensor": {"before": pair.before.sensor, "after": after.sensor},
        },
        "windows": [{k: r.get(k) for k in keys if r.get(k) is not None} for r in records],
        "settings": dict(settings),
        "outputs": {k: v.name for k, v in paths.items() if v.is_file() or k == "answer"},
        "run_id": run_id,
    }
    timings["outputs"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    answer["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    write_text(paths["answer"], json.dumps(answer, indent=1, ensure_ascii=False) + "\n")
    return paths, answer
