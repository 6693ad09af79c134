"""Benchmark: `python -m skyeye.batch` on Ray (2 workers) against the plain loop (``--workers
0``) over the same 20+ scenes, wall time including start-up; and `skyeye.serve`'s requests/s
and latency at 1 and 4 concurrent clients; one run, one machine.

    python bench/batch.py [--model skyeye-tiny] [--scenes 24] [--runs loop,loop_1_thread,
                          ray_2_workers] [--rounds 1] [--max-new-tokens 16] [--only batch|server]

Batch: each run is the CLI in a fresh process, timed from its start to its exit (Python start,
imports, Ray's start, the model loads, every scene, the summary), in one invocation, the order
alternating between rounds; the load average is noted around each. Scenes: see `make_scenes`
(the OSCD band folders of the shared data, the BigEarthNet fixtures, crops of the bundled
example); prompt "Show me where the water is with a mask.". Server: the model loaded once in-process, uvicorn on 127.0.0.1, the official openai
client in threads, a 96 px crop of the Sentinel-2 example as a GeoTIFF data URL per request.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPT = "Show me where the water is with a mask."


def crop(src_path: Path, out: Path, col: int, row: int, size: int) -> Path:
    with rasterio.open(src_path) as src:
        window = Window(col, row, size, size)
        profile = {**src.profile, "width": size, "height": size}
        profile["transform"] = src.window_transform(window)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read(window=window))
            dst.descriptions = src.descriptions
    return out


OSCD = REPO.parent / "shared" / "data" / "oscd-s2-change" / "images"


def make_scenes(folder: Path, count: int, oscd: Path) -> Path:
    """``count`` real scenes in ``folder/scenes``: the 20 OSCD Sentinel-2 L1C band folders (10
    cities x 2 dates, 339-858 px at 10 m, linked) when ``oscd`` exists, the 4 BigEarthNet
    patches of tests/fixtures/batch (copied), then 128-px crops of the bundled Sentinel-2
    example on a 96-px grid until there are ``count``."""
    scenes = folder / "scenes"
    scenes.mkdir(parents=True)
    made = 0
    if oscd.is_dir():
        for city in sorted(p for p in oscd.iterdir() if p.is_dir()):
            for dates in sorted(city.glob("imgs_*")):
                if made < count:
                    (scenes / f"{city.name}_{dates.name}").symlink_to(dates, True)
                    made += 1
    for patch in sorted((REPO / "tests/fixtures/batch/bigearthnet_s2").iterdir()):
        if patch.is_dir() and made < count:
            shutil.copytree(patch, scenes / patch.name)
            made += 1
    s2 = REPO / "examples/sentinel2_berlin_l1c.tif"
    offsets = [(c, r) for r in range(0, 385, 96) for c in range(0, 385, 96)]
    for col, row in offsets[: max(0, count - made)]:
        crop(s2, scenes / f"berlin_{col}_{row}.tif", col, row, 128)
        made += 1
    if made < count:
        raise SystemExit(f"only {made} scenes available: ask for --scenes {made} or fewer")
    return scenes


#: The runs compared, each `python -m skyeye.batch` in a fresh process (start-up included).
RUNS = {
    "loop": ["--workers", "0"],  # the plain loop, torch's default threads (all cores)
    "loop_1_thread": ["--workers", "0", "--threads", "1"],
    "ray_2_workers": ["--workers", "2"],  # threads per worker: cores / 2
}


def run_batch(name: str, scenes: Path, out: Path, model: str, max_new_tokens: int) -> dict:
    """One `python -m skyeye.batch` run: wall time from process start to exit, the load
    average around it, and the per-scene seconds the summary reports."""
    import geopandas as gpd

    cmd = [sys.executable, "-m", "skyeye.batch", "--inputs", str(scenes), "--prompt", PROMPT,
           "--out", str(out), "--model", model, "--max-new-tokens", str(max_new_tokens),
           *RUNS[name]]  # fmt: skip
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    table = gpd.read_parquet(out / "summary.parquet")
    done = table[table.status == "done"]
    if len(done) != len(table):
        raise SystemExit(f"{name}: not every scene done:\n{table[['key', 'reason']]}")
    return {
        "wall_s": round(wall, 1),
        "scenes": len(done),
        "scene_seconds_sum": round(float(done.seconds.sum()), 1),
        "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def outputs_equal(a: Path, b: Path) -> bool:
    """Every scene's mask, polygons and preview byte-equal in two runs' outputs (answer.json
    and mask.gpkg carry times; tests/batch compares those up to their times)."""
    names = ("mask.tif", "mask.geojson", "preview.png")
    folders = sorted((a / "scenes").iterdir())
    return all(
        (f / n).read_bytes() == (b / "scenes" / f.name / n).read_bytes()
        for f in folders
        for n in names
        if (f / n).exists()
    )


def bench_batch(
    model: str, folder: Path, max_new_tokens: int, count: int, runs: list[str], rounds: int
) -> dict:
    scenes = make_scenes(folder, count, OSCD)
    out: dict = {"scenes": count, "cores": os.cpu_count(), "runs": {n: [] for n in runs}}
    for i in range(rounds):
        order = runs if i % 2 == 0 else runs[::-1]  # alternate: drift in the load hits both
        for name in order:
            target = folder / f"out-{name}-{i}"
            out["runs"][name].append(run_batch(name, scenes, target, model, max_new_tokens))
            print(name, out["runs"][name][-1], file=sys.stderr, flush=True)
    walls = {n: statistics.median(r["wall_s"] for r in out["runs"][n]) for n in runs}
    for base in ("loop", "loop_1_thread"):  # each plain loop is a baseline of the others
        if base in walls:
            out[f"wall_ratio_to_{base}"] = {n: round(w / walls[base], 3) for n, w in walls.items()}
    if {"loop", "ray_2_workers"} <= set(runs):
        out["outputs_equal_loop_ray"] = outputs_equal(
            folder / "out-loop-0", folder / "out-ray_2_workers-0"
        )
    return out


def bench_server(model: str, folder: Path, requests: int, max_new_tokens: int) -> dict:
    import openai
    import uvicorn

    from skyeye.chat.session import GenerationSettings, load_chat
    from skyeye.serve import ServeConfig, create_app

    image = crop(REPO / "examples/sentinel2_berlin_l1c.tif", folder / "req.tif", 200, 200, 96)
    url = "data:image/tiff;base64," + base64.b64encode(image.read_bytes()).decode()
    t0 = time.perf_counter()
    chat = load_chat(model, settings=GenerationSettings(max_new_tokens=max_new_tokens))
    load_s = time.perf_counter() - t0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(ServeConfig(model=model, queue_size=64), chat)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=600)
    messages = [{"role": "user", "content": [
        {"type": "text", "text": PROMPT}, {"type": "image_url", "image_url": {"url": url}}]}]  # fmt: skip

    def one(_: int) -> float:
        t = time.perf_counter()
        client.chat.completions.create(model=Path(model).name, messages=messages)
        return time.perf_counter() - t

    one(0)  # warm-up
    out = {"model_load_s": round(load_s, 1), "requests_per_level": requests}
    for clients in (1, 4):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            lat = sorted(pool.map(one, range(requests)))
        wall = time.perf_counter() - t0
        out[f"{clients}_clients"] = {
            "requests_per_s": round(requests / wall, 3),
            "p50_s": round(statistics.median(lat), 2),
            "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2),
        }
    server.should_exit = True
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="skyeye-tiny")
    p.add_argument("--requests", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--scenes", type=int, default=24, help="scenes in the batch (20 or more)")
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated of {', '.join(RUNS)}")
    p.add_argument("--rounds", type=int, default=1, help="rounds of the runs (order alternating)")
    p.add_argument("--only", choices=("batch", "server"), default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="skyeye-bench-batch-") as tmp:
        result = {}
        if args.only in (None, "batch"):
            result["batch"] = bench_batch(
                args.model, Path(tmp) / "b", args.max_new_tokens, args.scenes,
                args.runs.split(","), args.rounds,
            )  # fmt: skip
        if args.only in (None, "server"):
            result["server"] = bench_server(
                args.model, Path(tmp), args.requests, args.max_new_tokens
            )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
