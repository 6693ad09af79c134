"""Areas of map geometries on the ellipsoid (square metres), whatever CRS they were drawn in."""

from __future__ import annotations

from typing import Any


def geodesic_area_m2(geometry: dict[str, Any] | None) -> float:
    """Area in m² of a GeoJSON (Multi)Polygon in EPSG:4326 lon/lat, on the WGS84 ellipsoid.

    Holes are subtracted; None (an empty mask's geometry) has area 0.
    """
    if geometry is None:
        return 0.0
    from pyproj import Geod
    from shapely.geometry import shape

    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(shape(geometry))
    return abs(float(area))
