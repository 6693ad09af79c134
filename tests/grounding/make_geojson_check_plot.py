"""Visual check: a box drawn on the NAIP fixture -> GeoJSON (EPSG:4326) -> back onto the image.

Left: the image with the box as drawn in pixels. Right: the same image in map coordinates
(UTM 14N extent) with the GeoJSON polygon reprojected from lon/lat back to UTM. Both must
outline the lake. Usage: .venv/bin/python tests/grounding/make_geojson_check_plot.py [OUT.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.warp import transform_geom  # noqa: E402

from skyeye.grounding.geo import boxes_to_geojson  # noqa: E402
from skyeye.grounding.parse import box_corners, parse_boxes  # noqa: E402

TIF = Path(__file__).parents[1] / "fixtures" / "grounding" / "naip_lake_crop.tif"
ANSWER = "<p>lake</p> {<25><34><86><86>} <p>field corner</p> {<3><5><20><25>|<30>}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "/tmp/grounding_check.png"
    with rasterio.open(TIF) as ds:
        img, transform, crs = ds.read([1, 2, 3]), ds.transform, ds.crs
        bounds = ds.bounds
    rgb = np.moveaxis(img, 0, -1).astype(float)
    rgb = np.clip((rgb - rgb.min()) / (np.percentile(rgb, 99) - rgb.min()), 0, 1)
    h, w = rgb.shape[:2]
    boxes = parse_boxes(ANSWER)
    fc = boxes_to_geojson(boxes, transform=transform, crs=crs, image_shape=(h, w), to_epsg4326=True)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5.5))
    ax0.imshow(rgb, extent=(0, w, h, 0))
    for b in boxes:
        pts = np.array(box_corners(b, w, h) + [box_corners(b, w, h)[0]])
        ax0.plot(pts[:, 0], pts[:, 1], "r-", lw=2)
        ax0.text(pts[0, 0], pts[0, 1] - 1, b.phrase or "", color="r")
    ax0.set_title(f"pixels: {ANSWER}", fontsize=8)
    ax1.imshow(rgb, extent=(bounds.left, bounds.right, bounds.bottom, bounds.top))
    for feat in fc["features"]:
        back = transform_geom("EPSG:4326", crs, feat["geometry"])
        ring = np.array(back["coordinates"][0])
        ax1.plot(ring[:, 0], ring[:, 1], "y--", lw=2)
        lon, lat = feat["geometry"]["coordinates"][0][0]
        ax1.text(ring[0, 0], ring[0, 1], f"{lon:.4f}, {lat:.4f}", color="y", fontsize=7)
    ax1.set_title("map (EPSG:26914): GeoJSON from EPSG:4326 reprojected back", fontsize=8)
    ax1.ticklabel_format(useOffset=False, style="plain")
    ax1.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
