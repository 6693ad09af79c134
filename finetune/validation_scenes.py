"""Whole-scene and water-mask checks of `finetune.validate_skyeye_tiny`: IoU helpers, the NDWI
baseline, the index / OSM / SAR water references, and the unseen example scenes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from instruct_data.from_rasters.spectral import sar_water_mask
from skyeye.io.band_roles import role_band_index
from skyeye.io.resample import resize_mask

WATER_PROMPT = "Show me where the water is in this image with a mask."
WATER_QUESTION = "Is there water in this image?"


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[float, int, int]:
    inter, union = int((pred & gt).sum()), int((pred | gt).sum())
    return (1.0 if union == 0 else inter / union), inter, union


def iou_summary(ious: list[tuple[float, int, int]]) -> dict[str, float]:
    if not ious:
        return {"n": 0}
    return {
        "n": len(ious),
        "giou": float(np.mean([i[0] for i in ious])),
        "ciou": float(sum(i[1] for i in ious) / max(1, sum(i[2] for i in ious))),
    }


def ndwi_water(
    data: np.ndarray, waves: list[float | None] | None, threshold: float = 0.0
) -> np.ndarray | None:
    """NDWI = (green - NIR) / (green + NIR) > threshold on (C, H, W) data; None without both bands.

    Bands are picked as the label rule picks them (nearest the role's centre: B08 for NIR)."""
    return _nd_water(data, waves, "nir", threshold)


def mndwi_water(
    data: np.ndarray, waves: list[float | None] | None, threshold: float = 0.0
) -> np.ndarray | None:
    """MNDWI = (green - SWIR1) / (green + SWIR1) > threshold (Xu 2006); None without SWIR."""
    return _nd_water(data, waves, "swir1", threshold)


def _nd_water(
    data: np.ndarray, waves: list[float | None] | None, other: str, threshold: float
) -> np.ndarray | None:
    g, o = role_band_index(waves, "green"), role_band_index(waves, other)
    if g is None or o is None:
        return None
    green, x = data[g].astype(np.float64), data[o].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        nd = (green - x) / (green + x)
    return np.nan_to_num(nd, nan=-1.0) > threshold


def index_water(
    data: np.ndarray, waves: list[float | None] | None, scale: float
) -> np.ndarray | None:
    """The from_rasters water label rule: NDWI > 0 and mean visible reflectance < 0.2."""
    ndwi = ndwi_water(data, waves, 0.0)
    idx = [role_band_index(waves, role) for role in ("blue", "green", "red")]
    if ndwi is None or any(i is None for i in idx):
        return None
    visible = np.nan_to_num(np.mean([data[i] for i in idx], axis=0) * scale, nan=1.0)
    return ndwi & (visible < 0.2)


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
        ref = reference if reference.shape == (h, w) else resize_mask(reference, (h, w))
        out["reference_share"] = float(ref.mean())
        out["model_iou"] = mask_iou(pred, ref)[0]
        if baseline is not None:
            base = baseline if baseline.shape == (h, w) else resize_mask(baseline, (h, w))
            out["baseline_iou"] = mask_iou(base, ref)[0]
    elif baseline is not None:
        base = baseline if baseline.shape == (h, w) else resize_mask(baseline, (h, w))
        out["agreement_iou_with_baseline"] = mask_iou(pred, base)[0]
        out["baseline_share"] = float(base.mean())
    if overlay is not None:
        _save_overlay(
            image,
            pred,
            reference,
            overlay,
            f"{label}: model water mask (red)"
            + (", reference outline (cyan)" if reference is not None else ""),
        )
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
        ref = reference if reference.shape == pred.shape else resize_mask(reference, pred.shape)
        edge = (
            ref & ~np.roll(ref, 1, 0)
            | ref & ~np.roll(ref, 1, 1)
            | ref & ~np.roll(ref, -1, 0)
            | ref & ~np.roll(ref, -1, 1)
        )
        out[edge] = [0, 255, 255]
    img = Image.fromarray(out.astype(np.uint8)).resize(
        (pred.shape[1] * 2, pred.shape[0] * 2), Image.NEAREST
    )
    canvas = Image.new("RGB", (img.width, img.height + 20), "white")
    canvas.paste(img, (0, 20))
    ImageDraw.Draw(canvas).text((4, 4), title, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def vv_threshold_water(image: Any, threshold_db: float) -> np.ndarray | None:
    """The trivial SAR water baseline: per-pixel VV backscatter (dB) below ``threshold_db``;
    None without a band named VV."""
    vv = [i for i, n in enumerate(image.band_names) if n.upper() == "VV"]
    if not vv:
        return None
    return np.nan_to_num(image.data[vv[0]], nan=0.0) < threshold_db


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
    """The water question and mask on the unseen Sentinel-2 and Sentinel-1 example scenes.

    S2: reference = the index label rule (or OSM water), baseline = NDWI > threshold.
    S1: reference = the SAR label rule (5x5 mean VV dB < ``sar_water_db``), baseline = plain
    per-pixel VV < ``vv_db_threshold``.
    """
    scenes: list[dict[str, Any]] = []
    if s2_scene is not None:
        from skyeye.io.raster import read_raster

        img = read_raster(str(s2_scene), max_size=asker.session.settings.read_size)
        ref = (
            osm_water(osm_water_path, img)
            if osm_water_path
            else index_water(img.data, img.wavelengths, s2_scale)
        )
        scenes.append(
            validate_scene(
                asker,
                s2_scene,
                ref,
                ndwi_water(img.data, img.wavelengths, ndwi_threshold),
                "sentinel-2 " + s2_scene.name,
                overlay,
            )
        )
    if s1_scene is not None:
        from skyeye.io.raster import read_raster

        img = read_raster(
            str(s1_scene), max_size=asker.session.settings.read_size, sensor="sentinel-1"
        )
        vv = [i for i, n in enumerate(img.band_names) if n.upper() == "VV"]
        # Reference: the SAR label rule of the training data (5x5 mean VV in dB < -18 dB);
        # baseline: the plain per-pixel VV threshold.
        ref = sar_water_mask(img, sar_water_db)[0] if vv else None
        base = vv_threshold_water(img, vv_db_threshold)
        scenes.append(
            validate_scene(
                asker,
                s1_scene,
                ref,
                base,
                "sentinel-1 " + s1_scene.name,
                s1_overlay_path(overlay) if overlay else None,
            )
        )
    return scenes
