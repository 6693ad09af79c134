"""Boxes and masks from image pixels to map coordinates: GeoJSON and GeoTIFF.

Pixel frame: continuous (col, row) with (0, 0) at the top-left corner of the top-left pixel,
the same frame as an affine ``transform`` of a raster (x = a*col + b*row + c, y = d*col + e*row + f).
A normalised box coordinate ``u`` (0..1) lies at ``u * W`` pixels on an image of width ``W``,
whatever size the model saw the image at: pass the transform and (H, W) of the grid the box
should be drawn on (usually the source raster's).

Masks become polygons in `skyeye.grounding.polygons` (the one polygoniser, shared with the
scene's outputs). GeoJSON output is a FeatureCollection in the raster CRS. RFC 7946 only knows WGS84 lon/lat,
so for other CRSs the legacy ``"crs"`` member (``urn:ogc:def:crs:EPSG::NNNN`` or the WKT) is
written too: GDAL/QGIS read it and put the features where they belong. With
``to_epsg4326=True`` coordinates are reprojected to lon/lat and no ``"crs"`` member is written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from affine import Affine
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS

from skyeye.grounding.parse import GroundedBox, box_corners
from skyeye.grounding.polygons import AREA_METHOD, CONNECTIVITY, SIEVE, AreaMethod, polygonize

logger = logging.getLogger(__name__)

__all__ = [
    "MaskArea",
    "boxes_to_geojson",
    "mask_area",
    "masks_to_geojson",
    "pixel_to_map",
    "map_to_pixel",
    "transform_for_shape",
    "write_mask_geotiff",
]

WGS84 = CRS.from_epsg(4326)


def _check_transform_crs(transform: Any, crs: Any) -> tuple[Affine, CRS]:
    if not isinstance(transform, Affine):
        raise TypeError(
            f"transform must be an affine.Affine (e.g. rasterio's dataset.transform), got {type(transform).__name__}"
        )
    if crs is None:
        raise ValueError(
            "crs is None: the image has no georeference, so map coordinates are undefined; "
            "use pixel coordinates (skyeye.grounding.box_corners) instead"
        )
    return transform, CRS.from_user_input(crs)


def _apply(t: Affine, x: float, y: float) -> tuple[float, float]:
    # Written out: affine 3 deprecates ``*`` for points and affine 2 lacks ``@``.
    return (t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f)


def pixel_to_map(
    transform: Affine, cols: Sequence[float], rows: Sequence[float]
) -> list[tuple[float, float]]:
    """Continuous pixel (col, row) positions -> map (x, y) with the raster's affine transform."""
    return [_apply(transform, float(c), float(r)) for c, r in zip(cols, rows, strict=True)]


def map_to_pixel(
    transform: Affine, xs: Sequence[float], ys: Sequence[float]
) -> list[tuple[float, float]]:
    """Map (x, y) -> continuous pixel (col, row); the inverse of :func:`pixel_to_map`."""
    inv = ~transform
    return [_apply(inv, float(x), float(y)) for x, y in zip(xs, ys, strict=True)]


def transform_for_shape(
    transform: Affine, src_shape: tuple[int, int], dst_shape: tuple[int, int]
) -> Affine:
    """The transform of the same footprint resampled from ``src_shape`` (H, W) to ``dst_shape``.

    Use it to georeference a mask predicted at the model's resolution.
    """
    (sh, sw), (dh, dw) = src_shape, dst_shape
    if min(sh, sw, dh, dw) <= 0:
        raise ValueError(f"shapes must be positive (H, W), got {src_shape} and {dst_shape}")
    sx, sy = sw / dw, sh / dh
    t = transform
    return Affine(t.a * sx, t.b * sy, t.c, t.d * sx, t.e * sy, t.f)


@dataclass(frozen=True)
class MaskArea:
    """What a mask covers: ``share`` of the valid pixels (0..1), ``pixels`` in the mask (valid
    ones), and ``m2`` on the ground (None without a georeference)."""

    share: float
    pixels: int
    m2: float | None

    @property
    def ha(self) -> float | None:
        return None if self.m2 is None else self.m2 / 1e4

    @property
    def km2(self) -> float | None:
        return None if self.m2 is None else self.m2 / 1e6


def mask_area(
    mask: np.ndarray,
    *,
    transform: Affine | None = None,
    crs: Any = None,
    valid: np.ndarray | None = None,
) -> MaskArea:
    """Measured share and ground area of a (H, W) bool mask on a raster grid.

    ``transform``/``crs`` are the grid's (the mask's own grid, e.g. `transform_for_shape` of the
    source). Projected CRS: each pixel's area is ``|a*e - b*d|`` in the CRS's linear unit,
    converted to metres. Geographic CRS: each pixel's geodesic area on the CRS's ellipsoid
    (pyproj ``Geod.polygon_area_perimeter`` of its four corners). ``valid`` (H, W) marks pixels
    with data; the share is of those and nodata pixels never count. Without ``crs``/``transform``
    ``m2`` is None.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    valid = np.ones_like(mask) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != mask.shape:
        raise ValueError(f"valid {valid.shape} and mask {mask.shape} must have the same shape")
    inside = mask & valid
    n_valid = int(valid.sum())
    share = float(inside.sum()) / n_valid if n_valid else 0.0
    if transform is None or crs is None:
        return MaskArea(share=share, pixels=int(inside.sum()), m2=None)
    transform, crs = _check_transform_crs(transform, crs)
    proj = ProjCRS.from_wkt(crs.to_wkt())
    if not proj.is_geographic:
        unit = proj.axis_info[0].unit_conversion_factor if proj.axis_info else 1.0
        pixel_m2 = abs(transform.a * transform.e - transform.b * transform.d) * unit**2
        return MaskArea(share=share, pixels=int(inside.sum()), m2=float(inside.sum()) * pixel_m2)
    geod = proj.get_geod()
    if geod is None:
        raise ValueError(f"the geographic CRS {crs} has no ellipsoid to measure areas on")
    rows, cols = np.nonzero(inside)
    if transform.b == 0 and transform.d == 0:
        # North-up: every pixel of a row has the same area; measure one pixel per row.
        counts = np.bincount(rows, minlength=mask.shape[0])
        todo = [(r, 0, int(n)) for r, n in enumerate(counts) if n]
    else:
        todo = [(int(r), int(c), 1) for r, c in zip(rows, cols, strict=True)]
    total = 0.0
    for r, c, n in todo:
        corners = [_apply(transform, c + dc, r + dr) for dc, dr in ((0, 0), (1, 0), (1, 1), (0, 1))]
        lons, lats = zip(*corners, strict=True)
        area, _ = geod.polygon_area_perimeter(lons, lats)
        total += abs(area) * n
    return MaskArea(share=share, pixels=int(inside.sum()), m2=total)


def _crs_member(crs: CRS) -> dict[str, Any]:
    epsg = crs.to_epsg()
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg is not None else crs.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def _reproject(geom: dict[str, Any], crs: CRS) -> dict[str, Any]:
    from rasterio.warp import transform_geom

    return dict(transform_geom(crs, WGS84, geom))


def _collection(features: list[dict[str, Any]], crs: CRS, to_epsg4326: bool) -> dict[str, Any]:
    fc: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if not to_epsg4326 and crs != WGS84:
        fc["crs"] = _crs_member(crs)
    return fc


def boxes_to_geojson(
    boxes: Sequence[GroundedBox],
    *,
    transform: Affine,
    crs: Any,
    image_shape: tuple[int, int],
    to_epsg4326: bool = False,
) -> dict[str, Any]:
    """One Polygon Feature per box, in the raster CRS (or EPSG:4326 lon/lat).

    ``image_shape`` is (H, W) of the grid ``transform`` describes. Rotated boxes are rotated
    about their centre in pixel space (see :func:`skyeye.grounding.box_corners`).
    Properties: ``index``, ``phrase``, ``angle``, ``box`` (normalised x1, y1, x2, y2).
    """
    transform, crs = _check_transform_crs(transform, crs)
    if len(image_shape) != 2 or min(image_shape) <= 0:
        raise ValueError(f"image_shape must be (H, W) with positive sizes, got {image_shape}")
    h, w = image_shape
    features = []
    for i, box in enumerate(boxes):
        corners = box_corners(box, width=w, height=h)
        ring = [list(_apply(transform, *pt)) for pt in corners]
        ring.append(ring[0])
        geom: dict[str, Any] = {"type": "Polygon", "coordinates": [ring]}
        if to_epsg4326:
            geom = _reproject(geom, crs)
        features.append(
            {
                "type": "Feature",
                "geometry": geom,
                "properties": {
                    "index": i,
                    "phrase": box.phrase,
                    "angle": box.angle,
                    "box": [box.x1, box.y1, box.x2, box.y2],
                },
            }
        )
    return _collection(features, crs, to_epsg4326)


def masks_to_geojson(
    masks: Any,
    phrases: Sequence[str | None] | None = None,
    *,
    transform: Affine,
    crs: Any,
    to_epsg4326: bool = False,
    connectivity: Literal[4, 8] = CONNECTIVITY,
    sieve: int = SIEVE,
    area: AreaMethod = AREA_METHOD,
) -> dict[str, Any]:
    """One Feature per mask: a MultiPolygon of its regions, from the one polygoniser
    (`skyeye.grounding.polygons.polygonize`, whose defaults the scene's polygons use too).

    masks: (K, H, W) bool (numpy or torch) on the grid of ``transform``. A mask with no region
    left (empty, or only regions under ``sieve`` pixels) gives a Feature with
    ``"geometry": null`` so that feature ``i`` is always mask ``i``.
    Properties: ``index``, ``phrase``, ``pixel_count`` (the mask's pixels, before the sieve),
    ``polygon_areas_m2`` (each polygon's area, in the geometry's order), ``polygon_area_m2``
    (their sum) and ``area_method`` (how they were measured).
    """
    transform, crs = _check_transform_crs(transform, crs)
    arr = np.asarray(masks.detach().cpu() if hasattr(masks, "detach") else masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"masks must be (K, H, W), got shape {arr.shape}")
    if arr.dtype != bool:
        raise ValueError(
            f"masks must be boolean, got {arr.dtype}; threshold logits first (e.g. logits > 0)"
        )
    phrases = list(phrases) if phrases is not None else [None] * arr.shape[0]
    if len(phrases) != arr.shape[0]:
        raise ValueError(f"got {len(phrases)} phrases for {arr.shape[0]} masks")
    features = []
    for i, (mask, phrase) in enumerate(zip(arr, phrases, strict=True)):
        polys = polygonize(
            mask,
            transform,
            crs,
            connectivity=connectivity,
            sieve=sieve,
            area=area,
            to_4326=to_epsg4326,
        )
        geom_out: dict[str, Any] | None = None
        if len(polys):
            geom_out = {"type": "MultiPolygon", "coordinates": polys.geojson_coordinates()}
        features.append(
            {
                "type": "Feature",
                "geometry": geom_out,
                "properties": {
                    "index": i,
                    "phrase": phrase,
                    "pixel_count": int(mask.sum()),
                    "polygon_areas_m2": [float(a) for a in polys.areas_m2],
                    "polygon_area_m2": polys.area_m2,
                    "area_method": polys.area_method,
                },
            }
        )
    return _collection(features, crs, to_epsg4326)


def write_mask_geotiff(
    path: str | os.PathLike[str], mask: Any, *, transform: Affine, crs: Any
) -> None:
    """Write a (H, W) mask as a one-band uint8 GeoTIFF (1 = inside) on the given grid."""
    import rasterio

    transform, crs = _check_transform_crs(transform, crs)
    arr = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {arr.shape}; write one file per mask")
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise ValueError("mask must be boolean or 0/1; threshold logits first (e.g. logits > 0)")
    profile = {
        "driver": "GTiff",
        "height": arr.shape[0],
        "width": arr.shape[1],
        "count": 1,
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write((arr != 0).astype(np.uint8), 1)
    logger.info("wrote mask GeoTIFF %s (%d x %d)", path, arr.shape[1], arr.shape[0])
