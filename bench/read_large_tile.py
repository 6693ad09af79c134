"""Benchmark: read a full Sentinel-2-tile-sized GeoTIFF (10980 x 10980 x 13 uint16) at max_size.

    python bench/read_large_tile.py [--workdir /tmp/x] [--max-size 384] [--no-overviews]
                                    [--no-baseline] [--json]

Writes the tile (tiled 512, deflate, with overviews unless --no-overviews), then, each in a
fresh subprocess, measures wall time and peak RSS (VmHWM of the child) of
``skyeye.io.read_raster(path, max_size=...)`` and, as a baseline, of rasterio's full read
(``src.read()``), the latter only if it fits comfortably in the available memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
BLOCK = 512

_PEAK = """
def peak_rss_mib():
    # VmHWM is this process's own high-water mark; ru_maxrss would also count the parent's
    # memory at fork time, since Linux carries it across exec.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

_CHILD_SKYEYE = """
import json, resource, sys, time
{peak}sys.path.insert(0, {repo!r})
from skyeye.io.raster import read_raster
rss0 = peak_rss_mib()
t = time.perf_counter()
im = read_raster({path!r}, max_size={max_size})
dt = time.perf_counter() - t
rss = peak_rss_mib()
print(json.dumps({{"seconds": dt, "peak_rss_mib": rss, "rss_after_import_mib": rss0,
                  "shape": list(im.data.shape), "transform": list(im.transform)[:6]}}))
"""

_CHILD_RASTERIO = """
import json, resource, time
{peak}import rasterio
rss0 = peak_rss_mib()
t = time.perf_counter()
with rasterio.open({path!r}) as src:
    a = src.read()
dt = time.perf_counter() - t
rss = peak_rss_mib()
print(json.dumps({{"seconds": dt, "peak_rss_mib": rss, "rss_after_import_mib": rss0,
                  "shape": list(a.shape)}}))
"""


def write_tile(path: Path, size: int = 10980, bands: int = 13, overviews: bool = True) -> None:
    """Write a (bands, size, size) uint16 tiled GeoTIFF strip by strip (bounded memory).

    Values are a smooth, band-dependent field plus a little noise, in the range of Sentinel-2
    reflectance x 10000, on the 10 m UTM grid of tile T33UUU.
    """
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=bands,
        dtype="uint16",
        crs="EPSG:32633",
        transform=Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 5900040.0),
        tiled=True,
        blockxsize=BLOCK,
        blockysize=BLOCK,
        compress="deflate",
        zlevel=1,
        predictor=2,
        interleave="pixel",
        photometric="MINISBLACK",
        BIGTIFF="YES",
    )
    rng = np.random.default_rng(0)
    x = np.arange(size, dtype=np.float32)
    col = 800.0 * np.sin(x / 900.0)
    offsets = (np.arange(bands, dtype=np.float32) * 150.0 + 800.0)[:, None, None]
    with rasterio.Env(GDAL_CACHEMAX=256 * 1024 * 1024), rasterio.open(path, "w", **profile) as dst:
        for row in tqdm(range(0, size, BLOCK), desc="write tile", unit="strip"):
            h = min(BLOCK, size - row)
            y = np.arange(row, row + h, dtype=np.float32)[:, None]
            field = 600.0 * np.cos(y / 700.0) + col[None, :]
            noise = rng.integers(0, 16, size=(1, h, size), dtype=np.uint16)
            strip = (offsets + field[None]).astype(np.uint16) + noise
            dst.write(strip, window=rasterio.windows.Window(0, row, size, h))
        if overviews:
            dst.build_overviews([2, 4, 8, 16, 32], Resampling.average)


def run_child(code: str) -> dict:
    """Run ``code`` in a fresh Python and parse the JSON line it prints."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(path: Path, max_size: int, baseline: bool) -> dict:
    """Peak RSS / time of read_raster(max_size) and, if it fits, of rasterio's full read."""
    result = {
        "read_raster": run_child(
            _CHILD_SKYEYE.format(peak=_PEAK, repo=str(REPO), path=str(path), max_size=max_size)
        )
    }
    with rasterio.open(path) as src:
        full_bytes = src.count * src.height * src.width * np.dtype(src.dtypes[0]).itemsize
    available = _available_bytes()
    if not baseline:
        result["baseline"] = "skipped (--no-baseline)"
    elif available is not None and full_bytes * 2 < available:
        result["baseline"] = run_child(_CHILD_RASTERIO.format(peak=_PEAK, path=str(path)))
        base, ours = result["baseline"], result["read_raster"]
        result["rss_ratio"] = base["peak_rss_mib"] / ours["peak_rss_mib"]
        result["time_ratio"] = base["seconds"] / ours["seconds"]
    else:
        result["baseline"] = (
            f"skipped: a full read needs {full_bytes / 2**30:.1f} GiB, "
            f"available {None if available is None else round(available / 2**30, 1)} GiB"
        )
    return result


def _available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where to write the tile (default: a temp dir)"
    )
    parser.add_argument("--size", type=int, default=10980, help="tile side in pixels")
    parser.add_argument("--bands", type=int, default=13)
    parser.add_argument("--max-size", type=int, default=384)
    parser.add_argument(
        "--no-overviews", action="store_true", help="write the tile without overviews"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip rasterio's full read")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        path = Path(tmp) / "tile.tif"
        t = time.perf_counter()
        write_tile(path, args.size, args.bands, overviews=not args.no_overviews)
        result = {
            "tile": f"{args.size}x{args.size}x{args.bands} uint16",
            "overviews": not args.no_overviews,
            "file_mib": path.stat().st_size / 2**20,
            "write_seconds": time.perf_counter() - t,
            "max_size": args.max_size,
        }
        result.update(measure(path, args.max_size, baseline=not args.no_baseline))
    if args.json:
        print(json.dumps(result))
    else:
        ours = result["read_raster"]
        print(
            f"tile {result['tile']} ({result['file_mib']:.0f} MiB, overviews={result['overviews']}), "
            f"written in {result['write_seconds']:.0f} s"
        )
        print(
            f"read_raster(max_size={args.max_size}): {ours['seconds']:.2f} s, peak RSS "
            f"{ours['peak_rss_mib']:.0f} MiB (after imports {ours['rss_after_import_mib']:.0f} MiB), "
            f"shape {ours['shape']}"
        )
        base = result["baseline"]
        if isinstance(base, dict):
            print(
                f"rasterio full read: {base['seconds']:.2f} s, peak RSS {base['peak_rss_mib']:.0f} MiB "
                f"-> {result['rss_ratio']:.1f}x the memory, {result['time_ratio']:.1f}x the time"
            )
        else:
            print(f"rasterio full read: {base}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
