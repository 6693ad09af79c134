"""The batch's summary table: one row per scene with its footprint, as GeoParquet or GeoPackage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skyeye.atomic import atomic_path
from skyeye.batch.inputs import Scene

COLUMNS = [
    "scene_id", "datetime", "status", "reason", "answer", "found", "area_m2", "share_of_valid",
    "seconds", "key", "source",
]  # fmt: skip


def footprint(scene: Scene, info: dict[str, Any]) -> dict[str, Any] | None:
    """The scene's footprint in EPSG:4326: the STAC geometry, else the analysed grid's bounds,
    else the source file's bounds; None when nothing is known (e.g. an unreadable file)."""
    if scene.geometry:
        return scene.geometry
    from rasterio.warp import transform_geom

    if info.get("transform") and info.get("crs"):
        a, b, c, d, e, f = info["transform"][:6]
        w, h = info["width"], info["height"]
        corners = [(0, 0), (w, 0), (w, h), (0, h), (0, 0)]
        ring = [[a * x + b * y + c, d * x + e * y + f] for x, y in corners]
        return dict(
            transform_geom(info["crs"], "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
        )
    source = scene.source[0] if isinstance(scene.source, list) else scene.source
    if not source:
        return None
    try:
        import rasterio
        from rasterio.warp import transform_bounds

        with rasterio.open(source) as src:
            if src.crs is None:
                return None
            w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    except Exception:  # unreadable: no footprint, the row's reason says why
        return None
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def write_summary(rows: list[dict[str, Any]], scenes: dict[str, Scene], path: Path) -> Path:
    """Write ``rows`` (summary rows of `skyeye.batch.worker`) to ``path`` (.parquet = GeoParquet,
    .gpkg = GeoPackage) atomically; the geometry is each scene's footprint in EPSG:4326."""
    import geopandas as gpd
    from shapely.geometry import shape

    geoms = []
    for row in rows:
        geom = footprint(scenes[row["key"]], row.get("scene_info") or {})
        geoms.append(shape(geom) if geom else None)
    records = [{c: row.get(c) for c in COLUMNS} for row in rows]
    for rec, row in zip(records, rows, strict=True):
        rec["scene_info"] = json.dumps(row.get("scene_info") or {})
    frame = gpd.GeoDataFrame(records, geometry=geoms, crs="EPSG:4326")
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gpkg":
            frame.to_file(tmp, driver="GPKG", layer="scenes", engine="pyogrio")
        else:
            frame.to_parquet(tmp)
    return path
