"""The one polygoniser: a (H, W) mask on a raster grid -> polygons with their areas.

The chat's GeoJSON (`skyeye.grounding.geo.masks_to_geojson`, the server's and MCP's
`skyeye.chat.reply_geo`, the demo) and the scene's polygons (`skyeye.scene.outputs`) come from
`polygonize`, so the same mask on the same grid gives the same polygons and areas everywhere.

Options, each said in the output where it changes numbers:

- ``connectivity`` 4 or 8: whether pixels touching only at a corner are one region.
- ``sieve``: regions smaller than this many pixels are dropped first (GDAL's sieve, which
  merges them into their neighbours); 0 or 1 keeps every pixel.
- ``area``: ``"ellipsoid"`` measures each polygon geodesically on the CRS's own ellipsoid (a
  projected CRS's polygons are unprojected to its geodetic CRS first, so UTM's scale error is
  not in the areas); ``"epsg4326"`` reprojects to EPSG:4326 and measures on WGS84. Every
  `MaskPolygons` carries ``area_method`` naming the method and ellipsoid; without a CRS the
  areas are unknown (NaN, ``area_method`` None).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from affine import Affine
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS

logger = logging.getLogger(__name__)

__all__ = [
    "AREA_METHOD",
    "CONNECTIVITY",
    "SIEVE",
    "AreaMethod",
    "MaskPolygons",
    "polygonize",
    "to_epsg4326",
]

AreaMethod = Literal["ellipsoid", "epsg4326"]

# One default for the chat, the server, the demo and the scene. 8-connectivity: a river or a
# road one pixel wide running diagonally is one region, not a chain of single pixels (what
# 4-connectivity made of the chat's masks). A 4-pixel sieve: a scene's stitched mask has
# isolated pixels where windows' blended probabilities sit at the threshold, and a full tile's
# mask gave tens of thousands of one-pixel polygons without it; 4 pixels (a 20 m x 20 m patch at
# 10 m) removes that speckle and no object a model can name. Areas on the CRS's own ellipsoid:
# planar areas in UTM are off by up to ~0.1 % (the projection's scale factor), geodesic ones are
# what a map's "area" means.
CONNECTIVITY: Literal[4, 8] = 8
SIEVE = 4
AREA_METHOD: AreaMethod = "ellipsoid"


@dataclass(frozen=True)
class MaskPolygons:
    """Polygons of one mask.

    geoms: (N,) object array of shapely Polygons, in `crs` (the grid's, or EPSG:4326 when
    reprojected; pixel coordinates when the grid has no CRS). areas_m2: (N,) float64 (NaN
    without a CRS). area_method: e.g. "geodesic on the CRS's ellipsoid (WGS 84)", None without
    a CRS. connectivity / sieve: the options used.
    """

    geoms: np.ndarray
    areas_m2: np.ndarray
    area_method: str | None
    crs: CRS | None
    connectivity: int
    sieve: int

    def __len__(self) -> int:
        return len(self.geoms)

    @property
    def area_m2(self) -> float | None:
        """Sum of the polygons' areas (None without a CRS; 0.0 without polygons)."""
        if self.area_method is None:
            return None
        return float(np.nansum(self.areas_m2)) if len(self.geoms) else 0.0

    def geojson_coordinates(self) -> list[Any]:
        """Each polygon's GeoJSON coordinates (rings of [x, y]), in order."""
        import shapely

        return [shapely.geometry.mapping(g)["coordinates"] for g in self.geoms]


def polygonize(
    mask: np.ndarray,
    transform: Affine,
    crs: Any = None,
    *,
    connectivity: Literal[4, 8] = CONNECTIVITY,
    sieve: int = SIEVE,
    area: AreaMethod = AREA_METHOD,
    to_4326: bool = False,
    inplace: bool = False,
) -> MaskPolygons:
    """Polygons of the True (or 1) pixels of a (H, W) bool or 0/1 uint8 `mask` on the grid of
    `transform` / `crs` (None: pixel coordinates, areas unknown); see the module docstring.

    to_4326: the polygons come back reprojected to EPSG:4326 (lon/lat); areas are measured
    before, with `area`. inplace: a uint8 `mask` may be sieved in place (a whole tile's mask
    is 120 MB: no copy); by default the caller's array is left as it was.
    """
    import shapely
    from rasterio.features import shapes
    from rasterio.features import sieve as gdal_sieve

    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    if area not in ("ellipsoid", "epsg4326"):
        raise ValueError(f"area must be 'ellipsoid' or 'epsg4326', got {area!r}")
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if mask.dtype == bool:
        mask = mask.view(np.uint8) if inplace else mask.astype(np.uint8)
    elif mask.dtype != np.uint8:
        raise ValueError(f"mask must be bool or 0/1 uint8, got {mask.dtype}")
    elif not inplace:
        mask = mask.copy()
    if sieve > 1 and mask.any():
        mask = gdal_sieve(mask, size=sieve, out=mask, connectivity=connectivity)
    geoms = np.array(
        [
            shapely.geometry.shape(g)
            for g, v in shapes(
                mask, mask=mask.view(bool), transform=transform, connectivity=connectivity
            )
            if v == 1
        ],
        dtype=object,
    )
    crs = None if crs is None else CRS.from_user_input(crs)
    areas, method = _areas(geoms, crs, area)
    out_crs = crs
    if crs is not None and to_4326:
        geoms, out_crs = to_epsg4326(geoms, crs), CRS.from_epsg(4326)
    return MaskPolygons(geoms, areas, method, out_crs, connectivity, sieve)


def to_epsg4326(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """Shapely geometries in `crs` reprojected to EPSG:4326 (lon, lat)."""
    import shapely
    from pyproj import Transformer

    if not len(geoms):
        return geoms
    t = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    return shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def on_earth(crs: CRS | None) -> bool:
    """Whether ``crs`` places its coordinates on the Earth (it has a geodetic CRS), so they can be
    given in EPSG:4326; a local engineering grid cannot."""
    return crs is not None and ProjCRS.from_wkt(crs.to_wkt()).geodetic_crs is not None


def _areas(geoms: np.ndarray, crs: CRS | None, area: AreaMethod) -> tuple[np.ndarray, str | None]:
    """(N,) geodesic areas in m² and the method's name (NaN and None without a CRS)."""
    import shapely
    from pyproj import Geod, Transformer

    if crs is None:
        return np.full(len(geoms), np.nan), None
    if area == "epsg4326":
        lonlat, geod = to_epsg4326(geoms, crs), Geod(ellps="WGS84")
        method = "geodesic in EPSG:4326 (WGS 84)"
    else:
        proj = ProjCRS.from_wkt(crs.to_wkt())
        own, geodetic = proj.get_geod(), proj.geodetic_crs
        if own is None or geodetic is None:
            # A local (engineering) grid, e.g. a site survey: not on any ellipsoid, so its areas
            # are planar in its own linear unit, as `mask_area` measures them.
            unit = proj.axis_info[0].unit_conversion_factor if proj.axis_info else 1.0
            planar = np.array([g.area * unit**2 for g in geoms], np.float64)
            return planar, "planar in the CRS's unit (a local grid without an ellipsoid)"
        geod = own
        lonlat = geoms
        if not proj.is_geographic and len(geoms):
            t = Transformer.from_crs(proj, geodetic, always_xy=True)
            lonlat = shapely.transform(
                geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))
            )
        name = proj.ellipsoid.name if proj.ellipsoid is not None else "unknown"
        method = f"geodesic on the CRS's ellipsoid ({name})"
    areas = np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in lonlat], np.float64)
    return areas, method
