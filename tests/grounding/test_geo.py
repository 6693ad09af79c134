"""Boxes and masks in map coordinates, checked against rasterio on a real NAIP GeoTIFF."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.transform import rowcol, xy
from rasterio.warp import transform as warp_points

from skyeye.grounding.geo import (
    boxes_to_geojson,
    map_to_pixel,
    masks_to_geojson,
    pixel_to_map,
    transform_for_shape,
    write_mask_geotiff,
)
from skyeye.grounding.parse import GroundedBox, parse_boxes
from skyeye.grounding.polygons import polygonize

TIF = Path(__file__).parents[1] / "fixtures" / "grounding" / "naip_lake_crop.tif"
# The lake in the fixture, as a model would write it.
LAKE_ANSWER = "<p>lake</p> {<25><34><86><86>}"


@pytest.fixture(scope="module")
def naip():
    with rasterio.open(TIF) as ds:
        return ds.read(), ds.transform, ds.crs


def test_fixture_is_the_real_tile(naip):
    img, transform, crs = naip
    assert img.shape == (4, 96, 112)  # R, G, B, NIR
    assert crs.to_epsg() == 26914
    assert transform == Affine(5.0, 0.0, 488249.0, 0.0, -5.0, 5208196.0)


@pytest.mark.parametrize(
    "transform",
    [
        Affine(5.0, 0.0, 488249.0, 0.0, -5.0, 5208196.0),
        Affine(0.000808484, 0.0, -74.72, 0.0, -0.000808484, -8.28),
        Affine(2.0, 0.5, 1000.0, 0.3, -2.0, 5000.0),  # rotated/sheared grid
    ],
)
def test_pixel_map_round_trip_matches_rasterio(transform):
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 500, 50)
    cols = rng.integers(0, 700, 50)
    # Pixel corners: rasterio's xy(offset="ul"); pixel centres: +0.5.
    ours = pixel_to_map(transform, cols, rows)
    ref_x, ref_y = xy(transform, rows, cols, offset="ul")
    assert np.allclose(ours, np.stack([ref_x, ref_y], 1), rtol=0, atol=1e-9)
    centres = pixel_to_map(transform, cols + 0.5, rows + 0.5)
    cx, cy = xy(transform, rows, cols, offset="center")
    assert np.allclose(centres, np.stack([cx, cy], 1), rtol=0, atol=1e-9)
    back = np.array(map_to_pixel(transform, [p[0] for p in centres], [p[1] for p in centres]))
    assert np.allclose(back, np.stack([cols + 0.5, rows + 0.5], 1), atol=1e-6)
    # rowcol of a pixel centre is that pixel.
    r, c = rowcol(transform, [p[0] for p in centres], [p[1] for p in centres])
    assert list(r) == list(rows) and list(c) == list(cols)


def test_box_on_real_geotiff_lies_where_drawn(naip):
    img, transform, crs = naip
    boxes = parse_boxes(LAKE_ANSWER)
    fc = boxes_to_geojson(boxes, transform=transform, crs=crs, image_shape=(96, 112))
    assert fc["type"] == "FeatureCollection"
    assert fc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::26914"
    (feat,) = fc["features"]
    assert feat["properties"]["phrase"] == "lake" and feat["properties"]["angle"] is None
    ring = feat["geometry"]["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    # By hand: x1 = 0.25 * 112 = 28 px, y1 = 0.34 * 96 = 32.64 px, x2 = 96.32 px, y2 = 82.56 px;
    # x = 488249 + 5 * col, y = 5208196 - 5 * row.
    expected = [
        (488389.0, 5208032.8),
        (488730.6, 5208032.8),
        (488730.6, 5207783.2),
        (488389.0, 5207783.2),
    ]
    assert np.allclose(ring[:4], expected, atol=1e-6)
    json.dumps(fc)  # plain JSON
    # Burn the polygon back onto the grid: it covers the lake (dark in NIR), not the fields.
    burned = rasterize([feat["geometry"]], out_shape=(96, 112), transform=transform).astype(bool)
    nir = img[3].astype(float)
    assert nir[burned].mean() < 0.6 * nir[~burned].mean()


def test_box_epsg4326(naip):
    _, transform, crs = naip
    fc = boxes_to_geojson(
        parse_boxes(LAKE_ANSWER),
        transform=transform,
        crs=crs,
        image_shape=(96, 112),
        to_epsg4326=True,
    )
    assert "crs" not in fc  # RFC 7946: lon/lat WGS84 is implied
    ring = np.array(fc["features"][0]["geometry"]["coordinates"][0])
    lon, lat = warp_points(crs, CRS.from_epsg(4326), [488389.0, 488730.6], [5208032.8, 5207783.2])
    assert np.allclose(ring[0], [lon[0], lat[0]], atol=1e-9)
    assert np.allclose(ring[2], [lon[1], lat[1]], atol=1e-9)
    # Sanity by hand: UTM 14N central meridian is 99 W; 11.6 km west of it at 47 N is ~0.153 deg.
    assert ring[0][0] == pytest.approx(
        -99.0 - 11611.0 / (111320 * math.cos(math.radians(47.02))), abs=2e-3
    )
    assert 47.00 < ring[0][1] < 47.04


def test_rotated_box_polygon(naip):
    _, transform, crs = naip
    box = GroundedBox(0.25, 0.25, 0.75, 0.75, angle=90.0)  # 56 x 48 px -> 48 x 56 px, same centre
    ring = np.array(
        boxes_to_geojson([box], transform=transform, crs=crs, image_shape=(96, 112))["features"][0][
            "geometry"
        ]["coordinates"][0]
    )
    cx, cy = transform @ (56, 48)
    assert ring[:4, 0].min() == pytest.approx(cx - 5 * 24) and ring[:4, 0].max() == pytest.approx(
        cx + 5 * 24
    )
    assert ring[:4, 1].min() == pytest.approx(cy - 5 * 28) and ring[:4, 1].max() == pytest.approx(
        cy + 5 * 28
    )


def test_masks_to_geojson_round_trip(naip):
    _, transform, crs = naip
    masks = np.zeros((3, 96, 112), dtype=bool)
    masks[0, 10:20, 5:15] = True
    masks[0, 50:60, 70:90] = True
    masks[1, 40:42, 40:43] = True
    fc = masks_to_geojson(masks, ["fields", "pond", "nothing"], transform=transform, crs=crs)
    f0, f1, f2 = fc["features"]
    assert f0["geometry"]["type"] == "MultiPolygon" and len(f0["geometry"]["coordinates"]) == 2
    props = dict(f0["properties"])
    areas = props.pop("polygon_areas_m2")
    assert props.pop("area_method") == "geodesic on the CRS's ellipsoid (GRS 1980)"
    # Geodesic areas of 100 and 200 one-metre pixels: UTM's scale error is well under 0.2 %.
    assert areas == pytest.approx(
        [100 * abs(transform.a * transform.e), 200 * abs(transform.a * transform.e)], rel=2e-3
    )
    assert props.pop("polygon_area_m2") == pytest.approx(sum(areas))
    assert props == {"index": 0, "phrase": "fields", "pixel_count": 300}
    assert f2["geometry"] is None and f2["properties"]["pixel_count"] == 0
    for feat, mask in zip((f0, f1), masks[:2], strict=True):
        burned = rasterize([feat["geometry"]], out_shape=(96, 112), transform=transform).astype(
            bool
        )
        assert (burned == mask).all()
    # The first blob's corner is where rasterio puts pixel (row 10, col 5)'s corner.
    xs = [pt[0] for poly in f0["geometry"]["coordinates"] for pt in poly[0]]
    ys = [pt[1] for poly in f0["geometry"]["coordinates"] for pt in poly[0]]
    ux, uy = xy(transform, 10, 5, offset="ul")
    assert ux in xs and uy in ys
    wgs = masks_to_geojson(masks[:1], None, transform=transform, crs=crs, to_epsg4326=True)
    lon, lat = wgs["features"][0]["geometry"]["coordinates"][0][0][0]
    assert -99.19 < lon < -99.12 and 47.0 < lat < 47.04
    # Reprojecting changes the coordinates, never the areas (measured on the grid's CRS).
    assert wgs["features"][0]["properties"]["polygon_areas_m2"] == areas


def test_the_polygoniser_s_options_change_what_they_say(naip):
    _, transform, crs = naip
    mask = np.zeros((12, 12), bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True  # a diagonal line, 3 px
    mask[6:9, 6:9] = True  # a 9-px block
    assert len(polygonize(mask, transform, crs, connectivity=4, sieve=0)) == 4
    assert len(polygonize(mask, transform, crs, connectivity=8, sieve=0)) == 2
    # The default (8-connectivity, 4-px sieve) drops the 3-px line and keeps the block.
    default = polygonize(mask, transform, crs)
    assert (len(default), default.connectivity, default.sieve) == (1, 8, 4)
    assert mask.sum() == 12  # the caller's mask is not sieved
    wgs = polygonize(mask, transform, crs, area="epsg4326")
    assert wgs.area_method == "geodesic in EPSG:4326 (WGS 84)"
    # NAD83's GRS 1980 and WGS 84 differ by 0.1 mm in their minor axis: the same area.
    assert wgs.areas_m2 == pytest.approx(default.areas_m2, rel=1e-6)
    pixels = polygonize(mask, Affine.identity(), None)
    assert pixels.area_method is None and pixels.area_m2 is None and np.isnan(pixels.areas_m2).all()
    with pytest.raises(ValueError, match="connectivity"):
        polygonize(mask, transform, crs, connectivity=6)  # type: ignore[arg-type]


def test_areas_on_a_geographic_grid_are_geodesic():
    # 0.001° pixels at the equator: 111.32 m x 110.57 m on WGS 84.
    transform = Affine(0.001, 0, 10.0, 0, -0.001, 0.0005)
    mask = np.ones((2, 3), bool)
    polys = polygonize(mask, transform, "EPSG:4326")
    assert polys.area_m2 == pytest.approx(6 * 111.32 * 110.57, rel=2e-3)
    assert polys.area_method == "geodesic on the CRS's ellipsoid (WGS 84)"


def test_masks_bad_input(naip):
    _, transform, crs = naip
    with pytest.raises(ValueError, match="boolean"):
        masks_to_geojson(np.zeros((1, 4, 4), np.float32), transform=transform, crs=crs)
    with pytest.raises(ValueError, match="2 phrases for 1 masks"):
        masks_to_geojson(np.zeros((1, 4, 4), bool), ["a", "b"], transform=transform, crs=crs)
    with pytest.raises(ValueError, match="no georeference"):
        masks_to_geojson(np.zeros((1, 4, 4), bool), transform=transform, crs=None)
    with pytest.raises(TypeError, match="affine.Affine"):
        boxes_to_geojson([], transform=(5, 0, 0, 0, -5, 0), crs=crs, image_shape=(4, 4))


def test_write_mask_geotiff(tmp_path, naip):
    _, transform, crs = naip
    mask = np.zeros((96, 112), bool)
    mask[30:80, 25:95] = True
    path = tmp_path / "lake_mask.tif"
    write_mask_geotiff(path, mask, transform=transform, crs=crs)
    with rasterio.open(path) as ds:
        assert (
            ds.transform == transform
            and ds.crs == crs
            and ds.count == 1
            and ds.dtypes[0] == "uint8"
        )
        assert (ds.read(1) == mask).all()
    with pytest.raises(ValueError, match="threshold"):
        write_mask_geotiff(tmp_path / "x.tif", np.full((4, 4), 0.3), transform=transform, crs=crs)


def test_transform_for_shape(naip):
    _, transform, _ = naip
    small = transform_for_shape(transform, (96, 112), (24, 28))
    assert small.a == pytest.approx(20.0) and small.e == pytest.approx(-20.0)
    # Same footprint: the far corner of the small grid is the far corner of the source.
    assert small @ (28, 24) == pytest.approx(transform @ (112, 96))
    with pytest.raises(ValueError):
        transform_for_shape(transform, (96, 112), (0, 28))


def test_a_local_site_grid_is_measured_planar_and_never_placed_on_earth():
    # A site survey's engineering CRS (no datum, no ellipsoid): areas in its metres, no lon/lat.
    from affine import Affine
    from rasterio.crs import CRS

    from skyeye.chat.reply_geo import reply_extension
    from skyeye.chat.session import ChatReply
    from skyeye.grounding.geo import mask_area, masks_to_geojson
    from skyeye.io.image import RasterImage

    crs = CRS.from_wkt(
        'LOCAL_CS["site grid",LOCAL_DATUM["x",0],UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'
    )
    mask = np.zeros((20, 20), bool)
    mask[5:10, 5:10] = True
    grid = Affine(2, 0, 100, 0, -2, 200)
    fc = masks_to_geojson([mask], transform=grid, crs=crs)
    props = fc["features"][0]["properties"]
    assert props["polygon_area_m2"] == pytest.approx(100.0) and "planar" in props["area_method"]
    area = mask_area(mask, transform=grid, crs=crs)
    assert area.m2 == pytest.approx(100.0)
    image = RasterImage(np.ones((1, 20, 20), np.float32), ["b"], crs=crs, transform=grid)
    reply = ChatReply(text="<p>pond</p> [SEG]", masks=[mask], mask_phrases=["pond"])
    reply.mask_images, reply.mask_areas = [0], [area]
    ext = reply_extension(reply, [image])
    assert ext["masks"][0]["area_m2"] == pytest.approx(100.0)
    assert ext["masks"][0]["geojson"] is None and ext["masks_geojson"] is None
