"""Benchmark: `skyeye.batch` on Ray (2 workers) against a plain Python loop over the same scenes,
and `skyeye.serve`'s requests/s and latency at 1 and 4 concurrent clients; one run, one machine.

    python bench/batch.py [--model skyeye-tiny] [--requests 8] [--max-new-tokens 16]
                          [--loop-threads 1] [--only batch|server]

Scenes: the 4 BigEarthNet Sentinel-2 patches of tests/fixtures/batch and 2 crops (128 px) of
examples/sentinel2_berlin_l1c.tif; prompt "Show me where the water is with a mask.". Model-load
time is measured apart from the scenes (each Ray worker loads the model once, in parallel with
the other). Server: the model loaded once in-process, uvicorn on 127.0.0.1, the official openai
client in threads, a 96 px crop of the Sentinel-2 example as a GeoTIFF data URL per request.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import statistics
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


def make_scenes(folder: Path) -> Path:
    scenes = folder / "scenes"
    scenes.mkdir(parents=True)
    for patch in sorted((REPO / "tests/fixtures/batch/bigearthnet_s2").iterdir()):
        if patch.is_dir():
            shutil.copytree(patch, scenes / patch.name)
    s2 = REPO / "examples/sentinel2_berlin_l1c.tif"
    crop(s2, scenes / "berlin_lake.tif", 160, 160, 128)
    crop(s2, scenes / "berlin_fields.tif", 380, 380, 128)
    return scenes


def bench_batch(model: str, folder: Path, max_new_tokens: int, loop_threads: int) -> dict:
    from skyeye.batch.inputs import collect_scenes
    from skyeye.batch.runner import run_local, run_ray

    scenes = collect_scenes(str(make_scenes(folder)))
    options = {"max_new_tokens": max_new_tokens}
    t0 = time.perf_counter()
    local = run_local(
        scenes, folder / "out-loop", PROMPT, model, options, threads=loop_threads, progress=False
    )
    loop_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray_run = run_ray(
        scenes, folder / "out-ray", PROMPT, model, options, workers=2, threads=1, progress=False
    )
    ray_wall = time.perf_counter() - t0
    for run in (local, ray_run):
        assert not run.failed, run.failed
    n = len(scenes)
    return {
        "scenes": n,
        f"loop_{loop_threads}_threads": {
            "model_load_s": round(local.load_seconds[0], 1),
            "scenes_s": round(local.seconds, 1),
            "scenes_per_s": round(n / local.seconds, 3),
            "wall_s": round(loop_wall, 1),
        },
        "ray_2_workers": {
            "model_load_s_per_worker": [round(s, 1) for s in ray_run.load_seconds],
            "scenes_s": round(ray_run.seconds, 1),
            "scenes_per_s": round(n / ray_run.seconds, 3),
            "wall_s_incl_ray_start_and_loads": round(ray_wall, 1),
        },
        "speedup_scenes_per_s": round(local.seconds / ray_run.seconds, 2),
    }


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
    p.add_argument("--loop-threads", type=int, default=1, help="torch threads of the plain loop")
    p.add_argument("--only", choices=("batch", "server"), default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="skyeye-bench-batch-") as tmp:
        result = {}
        if args.only in (None, "batch"):
            result["batch"] = bench_batch(
                args.model, Path(tmp) / "b", args.max_new_tokens, args.loop_threads
            )
        if args.only in (None, "server"):
            result["server"] = bench_server(
                args.model, Path(tmp), args.requests, args.max_new_tokens
            )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
