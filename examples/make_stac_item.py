"""Write examples/sentinel2_berlin_l1c.stac.json: a STAC Item (pystac) for the bundled Sentinel-2
crop, with a relative href, its footprint, datetime and eo:bands (names, STAC common names,
centre wavelengths from skyeye.io.sensors).

    python examples/make_stac_item.py
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pystac
import rasterio
from rasterio.warp import transform_bounds

from skyeye.io.sensors import get_sensor

HERE = Path(__file__).resolve().parent
TIF = HERE / "sentinel2_berlin_l1c.tif"
OUT = HERE / "sentinel2_berlin_l1c.stac.json"
#: STAC eo common names of the Sentinel-2 MSI bands (STAC eo extension's table).
COMMON = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge",
    "B06": "rededge", "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B10": "cirrus", "B11": "swir16", "B12": "swir22",
}  # fmt: skip


def main() -> int:
    with rasterio.open(TIF) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        epsg, shape, transform = src.crs.to_epsg(), [src.height, src.width], list(src.transform)[:6]
        names = list(src.descriptions)
    sensor = get_sensor("sentinel-2")
    bands = [
        {"name": n, "common_name": COMMON[n], "center_wavelength": sensor.find_band(n).wavelength}
        for n in names
    ]
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    item = pystac.Item(
        id="S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU_crop1024-128",
        geometry={"type": "Polygon", "coordinates": [ring]},
        bbox=[west, south, east, north],
        datetime=dt.datetime(2017, 2, 16, 10, 21, 1, tzinfo=dt.timezone.utc),
        properties={
            "platform": "sentinel-2a",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "proj:epsg": epsg,
            "proj:shape": shape,
            "proj:transform": transform,
        },
        stac_extensions=[
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
        ],
    )
    item.add_asset(
        "data",
        pystac.Asset(
            href="./sentinel2_berlin_l1c.tif",
            media_type=pystac.MediaType.GEOTIFF,
            roles=["data"],
            title="All 13 L1C bands on the 10 m grid (TOA reflectance x 10000)",
            extra_fields={"eo:bands": bands},
        ),
    )
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
