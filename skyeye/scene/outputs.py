"""What a scene run writes besides the mask: polygons (GeoJSON + GeoPackage with areas, from
the one polygoniser `skyeye.grounding.polygons`), the preview PNG, the merged boxes and the
scene-level summary's pieces."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image

from skyeye.atomic import atomic_path
from skyeye.grounding.parse import GroundedBox
from skyeye.grounding.polygons import SIEVE, polygonize, to_epsg4326
from skyeye.io.gdal import ReadOptions
from skyeye.io.image import RasterImage
from skyeye.render.overlay import draw_overlay
from skyeye.render.previews import render_preview
from skyeye.scene.source import Grid
from skyeye.scene.stitch import INSIDE

logger = logging.getLogger(__name__)

_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_DATETIME = re.compile(r"(\d{8}T\d{6})")


def write_polygons(
    mask_tif: Path,
    grid: Grid,
    geojson: Path,
    gpkg: Path,
    *,
    native_crs: bool = False,
    min_pixels: int = SIEVE,
) -> dict[str, Any]:
    """Polygonise the mask COG with the one polygoniser (`skyeye.grounding.polygons`: its
    default 8-connectivity, regions smaller than `min_pixels` sieved away, areas geodesic on the
    CRS's ellipsoid) into GeoJSON (EPSG:4326, or the scene's CRS with `native_crs`) and
    GeoPackage (the scene's CRS), with `area_m2`, `area_ha` and `area_method` per polygon.
    Returns {"count", "area_m2", "area_method"}.

    Without a CRS (a photo) there is no GeoJSON (RFC 7946 GeoJSON is lon/lat: pixel coordinates
    there would be drawn near 0°N 0°E; an earlier run's file is removed): the GeoPackage holds
    the polygons in pixel coordinates (x = column, y = row, down) and the areas are unknown
    (NaN; "area_m2": None)."""
    import shapely
    from pyogrio.raw import write as ogr_write

    with rasterio.Env(**ReadOptions().gdal_env()), rasterio.open(mask_tif) as src:
        mask = src.read(1).astype(np.uint8, copy=False)
    # 0/1 and sieved in the one array: a whole tile's mask is 120 MB, and its copies here were
    # a scene's peak RSS.
    np.equal(mask, INSIDE, out=mask.view(bool))
    crs = grid.crs
    polys = polygonize(mask, grid.transform, crs, sieve=min_pixels, inplace=True)
    del mask
    geoms_arr, areas = polys.geoms, polys.areas_m2
    n = len(geoms_arr)
    fields = ["id", "area_m2", "area_ha", "area_method"]
    data = [
        np.arange(1, n + 1, dtype=np.int64),
        np.asarray(areas, np.float64),
        np.asarray(areas, np.float64) / 1e4,
        np.array([polys.area_method] * n, dtype=object),
    ]
    crs_wkt = crs.to_wkt() if crs is not None else None
    out_geoms = geoms_arr
    out_crs = crs_wkt
    if crs is not None and not native_crs:
        out_geoms = to_epsg4326(geoms_arr, crs)
        out_crs = "EPSG:4326"
    targets = [(gpkg, geoms_arr, crs_wkt, "GPKG")]
    if crs is not None:
        targets.insert(0, (geojson, out_geoms, out_crs, "GeoJSON"))
    else:
        geojson.unlink(missing_ok=True)
    for path, g, c, driver in targets:
        with atomic_path(path) as tmp:
            tmp.unlink(missing_ok=True)  # GDAL's GPKG driver will not open an empty file
            ogr_write(
                tmp,
                geometry=shapely.to_wkb(g) if len(g) else np.array([], dtype=object),
                field_data=data,
                fields=fields,
                crs=c,
                driver=driver,
                geometry_type="Polygon",
                layer="mask",
            )
    return {"count": n, "area_m2": polys.area_m2, "area_method": polys.area_method}


def write_preview(
    thumbs: np.ndarray,
    mask_thumb: np.ndarray,
    band_names: list[str],
    wavelengths,
    sensor,
    phrase: str | None,
    target: Path,
) -> None:
    """The preview composite (thumbs (C, th, tw), NaN = nodata) with the mask drawn over it."""
    image = RasterImage(
        data=thumbs.astype(np.float32),
        band_names=list(band_names),
        wavelengths=None if wavelengths is None else list(wavelengths),
        sensor=sensor,
    )
    if not np.isfinite(image.data).any():
        picture = np.zeros((*thumbs.shape[1:], 3), np.uint8)
    else:
        picture = draw_overlay(
            render_preview(image), masks=[mask_thumb == INSIDE], mask_phrases=[phrase]
        )
    with atomic_path(target) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")


def compass(row: float, col: float, height: int, width: int) -> str:
    """Where (row, col) lies in the scene: "north-west", "centre", "south", ..."""
    v = "north" if row < height / 3 else "south" if row > 2 * height / 3 else ""
    h = "west" if col < width / 3 else "east" if col > 2 * width / 3 else ""
    return "-".join(p for p in (v, h) if p) or "centre"


def merge_boxes(boxes: list[dict[str, Any]], iou: float = 0.3) -> list[dict[str, Any]]:
    """Boxes in scene pixels ({"x1","y1","x2","y2","phrase"}) with duplicates from overlapping
    windows merged: boxes of the same phrase that overlap (IoU > `iou`, or one mostly inside the
    other) become their union."""
    merged: list[dict[str, Any]] = []
    for box in sorted(boxes, key=lambda b: -(b["x2"] - b["x1"]) * (b["y2"] - b["y1"])):
        for m in merged:
            if m.get("phrase") != box.get("phrase"):
                continue
            ix = max(0.0, min(m["x2"], box["x2"]) - max(m["x1"], box["x1"]))
            iy = max(0.0, min(m["y2"], box["y2"]) - max(m["y1"], box["y1"]))
            inter = ix * iy
            a = (box["x2"] - box["x1"]) * (box["y2"] - box["y1"])
            b = (m["x2"] - m["x1"]) * (m["y2"] - m["y1"])
            union = a + b - inter
            if union > 0 and (inter / union > iou or (a > 0 and inter / a > 0.8)):
                for k, f in (("x1", min), ("y1", min), ("x2", max), ("y2", max)):
                    m[k] = f(m[k], box[k])
                m["windows"] = sorted(set(m["windows"]) | set(box["windows"]))
                break
        else:
            merged.append(dict(box))
    return merged


def window_box(box: GroundedBox, row: int, col: int, height: int, width: int, index: int) -> dict:
    """A window's normalised box in scene pixel coordinates."""
    return {
        "x1": col + box.x1 * width,
        "y1": row + box.y1 * height,
        "x2": col + box.x2 * width,
        "y2": row + box.y2 * height,
        "phrase": box.phrase,
        "windows": [index],
    }


def mean_percentage(records: list[dict[str, Any]]) -> float | None:
    """The scene's amount from windows answering with a percentage, weighted by valid pixels."""
    total = weight = 0.0
    for r in records:
        m = _PERCENT.search(r.get("answer") or "")
        if m and r.get("valid_pixels"):
            total += float(m.group(1)) * r["valid_pixels"]
            weight += r["valid_pixels"]
    return round(total / weight, 2) if weight else None


def most_common_phrase(records: list[dict[str, Any]]) -> str | None:
    phrases = Counter(r["phrase"] for r in records if r.get("phrase"))
    return phrases.most_common(1)[0][0] if phrases else None


def scene_datetime(label: str) -> str | None:
    """Acquisition time from a Sentinel-style file name (20170216T102101 -> ISO 8601)."""
    m = _DATETIME.search(label)
    if not m:
        return None
    s = m.group(1)
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]}T{s[9:11]}:{s[11:13]}:{s[13:15]}Z"
