"""`mask_area`: the share and ground area of a mask, pinned against rasterio + pyproj."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.features import shapes

from skyeye.grounding.geo import mask_area


def _blob(h: int = 40, w: int = 50) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - 18) ** 2 / 120 + (xx - 22) ** 2 / 300 < 1
    mask[30:34, 5:45] = True  # a second part: a river
    return mask


def _polygon_m2(mask: np.ndarray, transform: Affine, geod: Geod | None) -> float:
    """Area of rasterio's vectorised mask: planar shoelace, or geodesic with ``geod``."""
    total = 0.0
    for geom, _value in shapes(mask.astype(np.uint8), mask=mask, transform=transform):
        for k, ring in enumerate(geom["coordinates"]):
            xs, ys = zip(*ring, strict=True)
            if geod is None:
                area = 0.5 * abs(np.dot(xs[:-1], ys[1:]) - np.dot(xs[1:], ys[:-1]))
            else:
                area = abs(geod.polygon_area_perimeter(xs, ys)[0])
            total += area if k == 0 else -area  # holes
    return total


def test_projected_utm_10m():
    mask = _blob()
    transform = Affine(10.0, 0, 391000.0, 0, -10.0, 5820000.0)
    area = mask_area(mask, transform=transform, crs=CRS.from_epsg(32633))
    assert area.m2 == pytest.approx(_polygon_m2(mask, transform, None), rel=1e-9)
    assert area.m2 == mask.sum() * 100.0
    assert area.ha == pytest.approx(area.m2 / 1e4)
    assert area.km2 == pytest.approx(area.m2 / 1e6)
    assert area.share == pytest.approx(mask.mean())


def test_projected_in_feet_converts_to_metres():
    mask = _blob()
    transform = Affine(10.0, 0, 1000000.0, 0, -10.0, 500000.0)
    area = mask_area(mask, transform=transform, crs=CRS.from_epsg(2263))  # NY Long Island, US ft
    us_survey_foot = 1200 / 3937  # metres
    assert area.m2 == pytest.approx(mask.sum() * 100.0 * us_survey_foot**2, rel=1e-9)


def test_geographic_is_geodesic():
    mask = _blob()
    # ~0.001° pixels at 60° N: planar degrees would be wrong by far; geodesic on WGS84.
    transform = Affine(0.001, 0, 13.0, 0, -0.001, 60.5)
    area = mask_area(mask, transform=transform, crs=CRS.from_epsg(4326))
    expected = _polygon_m2(mask, transform, Geod(ellps="WGS84"))
    assert area.m2 == pytest.approx(expected, rel=1e-6)
    # A pixel is ~55 m x 111 m there (cos 60.5° of 111 km per degree): sanity on the magnitude.
    assert area.m2 / mask.sum() == pytest.approx(55.0 * 111.4, rel=0.01)


def test_share_is_of_valid_pixels_and_nodata_never_counts():
    mask = np.zeros((10, 10), bool)
    mask[:, :6] = True
    valid = np.ones((10, 10), bool)
    valid[:, :2] = False  # nodata under part of the mask
    transform = Affine(20.0, 0, 0.0, 0, -20.0, 0.0)
    area = mask_area(mask, transform=transform, crs="EPSG:32631", valid=valid)
    assert area.pixels == 40
    assert area.share == pytest.approx(40 / 80)
    assert area.m2 == 40 * 400.0
    assert mask_area(mask).m2 is None and mask_area(mask).share == pytest.approx(0.6)
