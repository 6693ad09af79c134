"""The batch's summary table: one row per scene with its footprint, as GeoParquet or GeoPackage.

`SummaryFile` rewrites the table (atomically) each time rows arrive, so a batch killed halfway
leaves a summary of every entry finished until then; `write_summary` writes it once.
"""

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


def _geometry(row: dict[str, Any], scenes: dict[str, Scene]) -> Any:
    """The row's footprint as a shapely geometry (None when unknown)."""
    from shapely.geometry import shape

    geom = footprint(scenes[row["key"]], row.get("scene_info") or {})
    return shape(geom) if geom else None


def write_summary(
    rows: list[dict[str, Any]], scenes: dict[str, Scene], path: Path, geoms: list[Any] | None = None
) -> Path:
    """Write ``rows`` (summary rows of `skyeye.batch.worker`) to ``path`` (.parquet = GeoParquet,
    .gpkg = GeoPackage) atomically; the geometry is each scene's footprint in EPSG:4326
    (``geoms``: the rows' footprints when the caller has them already)."""
    import geopandas as gpd

    if geoms is None:
        geoms = [_geometry(row, scenes) for row in rows]
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


class SummaryFile:
    """The summary at ``path``, rewritten atomically whenever rows are added: a crash or a kill
    loses no finished entry (each scene's outputs are on disk too; a resumed batch reads them
    back). Rows are kept in the input's order, whatever order the workers finish in.

    scenes: every entry of the batch (their order is the table's; footprints come from them).
    """

    def __init__(self, path: Path, scenes: list[Scene]) -> None:
        self.path = path
        self.scenes = {s.key: s for s in scenes}
        self.order = {s.key: i for i, s in enumerate(scenes)}
        self.rows: dict[str, tuple[dict[str, Any], Any]] = {}  # key -> (row, footprint)

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Record ``rows`` (a footprint computed once each) and rewrite the table."""
        for row in rows:
            self.rows[row["key"]] = (row, _geometry(row, self.scenes))
        keys = sorted(self.rows, key=self.order.__getitem__)
        write_summary(
            [self.rows[k][0] for k in keys], self.scenes, self.path, [self.rows[k][1] for k in keys]
        )
