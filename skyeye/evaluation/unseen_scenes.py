"""Whole unseen scenes of the skyeye-tiny card: the water question and the water mask asked of
one Sentinel-2 and one Sentinel-1 example, IoU against the label rule (or OpenStreetMap water)
beside the index-threshold baseline, and an overlay PNG.

S2: reference = the optical water label rule (`label_rules.water_index_mask`: NDWI > 0 and dark;
the NDWI > 0 baseline is nearly that rule, so it is an upper bound, not a rival) or OSM water;
baseline = NDWI > threshold. S1: reference = the SAR label rule (5x5 mean VV < -18 dB), baseline
= the plain per-pixel VV < -15 dB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from skyeye.atomic import atomic_path
from skyeye.errors import MissingBandError
from skyeye.evaluation.metrics import mask_iou
from skyeye.evaluation.tasks.refseg import WATER_PROMPT
from skyeye.grounding.label_rules import (
    index_threshold_mask,
    sar_water_mask,
    vv_threshold_mask,
    water_index_mask,
)
from skyeye.grounding.parse import parse_yes_no
from skyeye.io.resample import resize_mask

WATER_QUESTION = "Is there water in this image?"


def osm_water(gpkg: Path, image: Any) -> np.ndarray:
    """OpenStreetMap water polygons (fclass == 'water') rasterised on `image`'s grid."""
    import pyogrio
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping

    frame = pyogrio.read_dataframe(gpkg) if hasattr(pyogrio, "read_dataframe") else None
    if frame is None:
        raise RuntimeError("pyogrio.read_dataframe is needed to read the OSM polygons")
    frame = frame[frame["fclass"] == "water"]
    src_crs = frame.crs.to_string() if frame.crs is not None else "EPSG:4326"
    shapes = [transform_geom(src_crs, image.crs, mapping(g)) for g in frame.geometry]
    h, w = image.data.shape[1:]
    return rasterize(
        [(s, 1) for s in shapes], out_shape=(h, w), transform=image.transform, fill=0
    ).astype(bool)


def _on(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return mask if mask.shape == shape else resize_mask(mask, shape)


def validate_scene(
    asker: Any,
    path: Path,
    reference: np.ndarray | None,
    baseline: np.ndarray | None,
    label: str,
    overlay: Path | None = None,
) -> dict[str, Any]:
    """Ask the water question and the water mask on a whole scene; IoU vs `reference` / `baseline`."""
    from skyeye.io.raster import read_raster

    image = read_raster(
        str(path),
        max_size=asker.session.settings.read_size,
        sar_wavelength=asker.session.processor.image_processor.sar_wavelength,
    )
    presence = asker.ask(image, WATER_QUESTION)
    reply = asker.ask(image, WATER_PROMPT)
    h, w = image.data.shape[1:]
    pred = reply.masks[0] if reply.masks else np.zeros((h, w), bool)
    out: dict[str, Any] = {
        "scene": label,
        "presence_answer": presence.text,
        "mask_answer": reply.text,
        "mask_share": float(pred.mean()),
    }
    if reference is not None:
        ref = _on(reference, (h, w))
        out["reference_share"] = float(ref.mean())
        out["model_iou"] = mask_iou(pred, ref)[0]
        if baseline is not None:
            out["baseline_iou"] = mask_iou(_on(baseline, (h, w)), ref)[0]
    elif baseline is not None:
        base = _on(baseline, (h, w))
        out["agreement_iou_with_baseline"] = mask_iou(pred, base)[0]
        out["baseline_share"] = float(base.mean())
    if overlay is not None:
        title = f"{label}: model water mask (red)" + (
            ", reference outline (cyan)" if reference is not None else ""
        )
        _save_overlay(image, pred, reference, overlay, title)
        out["overlay"] = str(overlay)
    return out


def _save_overlay(
    image: Any, pred: np.ndarray, reference: np.ndarray | None, path: Path, title: str
) -> None:
    from PIL import Image, ImageDraw

    from skyeye.render.previews import render_preview

    out = render_preview(image).astype(np.float32)
    out[pred] = 0.5 * out[pred] + 0.5 * np.array([255, 0, 0])
    if reference is not None:
        ref = _on(reference, pred.shape)
        edge = (
            ref & ~np.roll(ref, 1, 0)
            | ref & ~np.roll(ref, 1, 1)
            | ref & ~np.roll(ref, -1, 0)
            | ref & ~np.roll(ref, -1, 1)
        )
        out[edge] = [0, 255, 255]
    img = Image.fromarray(out.astype(np.uint8)).resize(
        (pred.shape[1] * 2, pred.shape[0] * 2), Image.Resampling.NEAREST
    )
    canvas = Image.new("RGB", (img.width, img.height + 20), "white")
    canvas.paste(img, (0, 20))
    ImageDraw.Draw(canvas).text((4, 4), title, fill="black")
    with atomic_path(path) as tmp:  # the overlay appears only when complete
        canvas.save(tmp)


def s1_overlay_path(overlay: Path) -> Path:
    """Where the S1 scene's overlay goes beside the S2 one: ``*s2*`` becomes ``*s1*``, else a
    ``_s1`` suffix (a name without "s2" gave both scenes one file, the S2 overlay lost)."""
    stem = overlay.stem.replace("s2", "s1") if "s2" in overlay.stem else overlay.stem + "_s1"
    return overlay.with_name(stem + ".png")


def example_scenes(
    asker: Any,
    *,
    s2_scene: Path | None,
    s1_scene: Path | None,
    s2_scale: float,
    osm_water_path: Path | None,
    ndwi_threshold: float,
    vv_db_threshold: float,
    sar_water_db: float,
    overlay: Path | None,
) -> list[dict[str, Any]]:
    """The water question and mask on the unseen Sentinel-2 and Sentinel-1 example scenes."""
    from skyeye.io.raster import read_raster

    scenes: list[dict[str, Any]] = []
    if s2_scene is not None:
        img = read_raster(str(s2_scene), max_size=asker.session.settings.read_size)
        ref: np.ndarray | None
        if osm_water_path:
            ref = osm_water(osm_water_path, img)
        else:
            try:
                ref = water_index_mask(img, s2_scale)[0]
            except MissingBandError:
                ref = None
        base = index_threshold_mask(img, "ndwi", ndwi_threshold)
        label = "sentinel-2 " + s2_scene.name
        scenes.append(validate_scene(asker, s2_scene, ref, base, label, overlay))
    if s1_scene is not None:
        img = read_raster(
            str(s1_scene), max_size=asker.session.settings.read_size, sensor="sentinel-1"
        )
        vv = [i for i, n in enumerate(img.band_names) if n.upper() == "VV"]
        ref = sar_water_mask(img, sar_water_db)[0] if vv else None
        base = vv_threshold_mask(img, vv_db_threshold)
        label = "sentinel-1 " + s1_scene.name
        s1_overlay = s1_overlay_path(overlay) if overlay else None
        scenes.append(validate_scene(asker, s1_scene, ref, base, label, s1_overlay))
    return scenes


def scene_blocks(scenes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Scalar numbers of each unseen scene as a report block, so model cards list them with the
    rest (``answers_yes_to_water``: the presence answer's yes/no)."""
    out: dict[str, dict[str, Any]] = {}
    for scene in scenes:
        block = {k: v for k, v in scene.items() if isinstance(v, (int, float))}
        block["answers_yes_to_water"] = float(parse_yes_no(scene["presence_answer"]) == "yes")
        block["n"] = 1
        block["dataset"] = scene["scene"].split(" ", 1)[1]
        out[f"unseen scene: {scene['scene']}"] = block
    return out
