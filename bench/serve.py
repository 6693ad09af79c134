"""Benchmark: `python -m skyeye.serve` with 1, 4 and 8 concurrent clients against the in-process
`ChatSession`, in one invocation on one machine (issue 30).

    python bench/serve.py [--rounds 2] [--requests 6] [--concurrency 8] [--json out.json]

The server is the real entry point (`python -m skyeye.serve --model skyeye-tiny --concurrency 8`,
a subprocess; its continuous batcher decodes up to 8 answers together). Each request asks "Is
there water in this image?" about the bundled Sentinel-2 GeoTIFF (512 px, 13 bands) sent as a
data URL; every request gets its own copy of the image (one pixel changed), so the image-prefix
cache never answers for it (the worst case: many people, many images). Clients are threads
posting a prepared body with httpx; latency is request to whole answer. The in-process baseline
is what the terminal chat does: a fresh `ChatSession`, `add_image(path)`, `ask(question)`, on the
same image files, in this process while the server idles, the model loaded as the server loads
it (`--dtype auto`: the LLM in bfloat16 where that is fast) with the same torch threads.

Rounds alternate the order (baseline, 1, 4, 8 clients; then reversed); reported are the medians
over rounds of answers/s and of p50/p95 latency, and the issue's ratios: 4 clients' answers/s
over one client's (target >= 2.5x), their p50 over one client's (<= 1.6x), one client's p50
over the in-process answer (<= 1.1x). Last, a follow-up (the same image and conversation sent
again with a second question, as a stateless client does): time to the first streamed chunk
(sent once the first token is generated) of the first and the second turn; the second starts
from the server's cached image prefix. Beside each level: the server process's CPU seconds per
answer and the cores it used (CPU time over wall time; on a shared machine, what it was given),
and the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import rasterio

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"
QUESTION = "Is there water in this image?"
FOLLOW_UP = "How much of the image is water?"


def image_copies(folder: Path, count: int) -> list[Path]:
    """``count`` copies of the example, each with one pixel of band 1 changed (distinct bytes)."""
    paths = []
    with rasterio.open(EXAMPLE) as src:
        profile, data, names = src.profile, src.read(), src.descriptions
    for k in range(count):
        copy = data.copy()
        copy[0, 0, 0] = np.uint16(int(copy[0, 0, 0]) + 1 + k)
        path = folder / f"s2_{k:03d}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(copy)
            dst.descriptions = names
        paths.append(path)
    return paths


def body(path: Path, messages_before: list | None = None, stream: bool = False) -> bytes:
    url = "data:image/tiff;base64," + base64.b64encode(path.read_bytes()).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUESTION}]
    messages = [{"role": "user", "content": content}] + (messages_before or [])
    return json.dumps({"model": "skyeye-tiny", "messages": messages, "stream": stream}).encode()


def start_server(port: int, concurrency: int, threads: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "skyeye.serve", "--model", "skyeye-tiny", "--port", str(port)]
    command += ["--concurrency", str(concurrency), "--queue", "64", "--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k != "SKYEYE_API_KEY"}
    server = subprocess.Popen(
        command, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise RuntimeError("the server did not start in 300 s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_clients(url: str, bodies: list[bytes], clients: int, server_pid: int) -> dict:
    """Every body posted by ``clients`` threads; answers/s, latency percentiles, and the
    server process's CPU seconds per answer and cores used (CPU time over wall time: on a
    shared machine, what it got)."""
    server = psutil.Process(server_pid)
    http = httpx.Client(timeout=600)

    def one(data: bytes) -> float:
        started = time.perf_counter()
        reply = http.post(f"{url}/chat/completions", content=data)
        reply.raise_for_status()
        return time.perf_counter() - started

    cpu = sum(server.cpu_times()[:2])
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(pool.map(one, bodies))
    wall = time.perf_counter() - started
    cpu = sum(server.cpu_times()[:2]) - cpu
    http.close()
    return {
        "answers_per_s": len(bodies) / wall,
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
        "cpu_s_per_answer": cpu / len(bodies),
        "cores_used": cpu / wall,
    }


def in_process(chat, paths: list[Path]) -> dict:
    from skyeye.chat.session import ChatSession

    latencies = []
    cpu = time.process_time()
    for path in paths:
        started = time.perf_counter()
        session = ChatSession(chat.model, chat.processor, chat.settings)
        session.add_image(path)
        session.ask(QUESTION)
        latencies.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu
    latencies.sort()
    return {
        "answers_per_s": len(paths) / sum(latencies),
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
        "cpu_s_per_answer": cpu / len(paths),
        "cores_used": cpu / sum(latencies),
    }


def first_token(url: str, data: bytes) -> tuple[float, str]:
    """(seconds to the first chunk, the whole answer) of a streamed request. The server sends its
    first chunk (the role, empty content) once the first token is generated; the words may come
    later (the readable stream holds a mask answer back until its mask is measured)."""
    started, first, text = time.perf_counter(), None, ""
    with httpx.stream("POST", f"{url}/chat/completions", content=data, timeout=600) as reply:
        for line in reply.iter_lines():
            if not line.startswith("data: {"):
                continue
            if first is None:
                first = time.perf_counter() - started
            for choice in json.loads(line[6:]).get("choices", []):
                text += choice["delta"].get("content") or ""
    return first if first is not None else time.perf_counter() - started, text


def follow_up(url: str, path: Path) -> dict:
    """A stateless client's two turns about one new image (the second resends the first)."""
    t1, answer = first_token(url, body(path, stream=True))
    turn = [{"role": "assistant", "content": answer}, {"role": "user", "content": FOLLOW_UP}]
    t2, _ = first_token(url, body(path, turn, stream=True))
    return {"turn1_first_token_s": t1, "turn2_first_token_s": t2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=6, help="requests per client level x")
    parser.add_argument("--concurrency", type=int, default=8, help="the server's batch size")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of the server and the baseline"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    from skyeye.scene.infer import open_session

    torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()

    levels = {1: args.requests, 4: 2 * args.requests, 8: 3 * args.requests}
    per_round = args.requests + sum(levels.values())
    with tempfile.TemporaryDirectory(prefix="skyeye-bench-serve-") as tmp:
        folder = Path(tmp)
        paths = image_copies(folder, per_round * args.rounds + 4)
        bodies = [body(p) for p in paths]
        port = free_port()
        server = start_server(port, args.concurrency, args.threads, folder / "server.log")
        url = f"http://127.0.0.1:{port}/v1"
        try:
            chat = open_session("skyeye-tiny")  # as the server loads it (--dtype auto)
            in_process(chat, paths[-2:-1])  # warm-ups: this process and the server
            run_clients(url, bodies[-1:], 1, server.pid)
            rows: dict[str, list[dict]] = {k: [] for k in ("in_process", "1", "4", "8")}
            used = 0
            for r in range(args.rounds):
                order = ["in_process", "1", "4", "8"]
                for name in order if r % 2 == 0 else order[::-1]:
                    n = args.requests if name == "in_process" else levels[int(name)]
                    chosen = slice(used, used + n)
                    used += n
                    if name == "in_process":
                        rows[name].append(in_process(chat, paths[chosen]))
                    else:
                        rows[name].append(run_clients(url, bodies[chosen], int(name), server.pid))
                    print(name, {k: round(v, 3) for k, v in rows[name][-1].items()}, flush=True)
            turns = follow_up(url, paths[-3])
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {
        name: {k: round(statistics.median(row[k] for row in runs), 3) for k in runs[0]}
        for name, runs in rows.items()
    }
    one, four = result["1"], result["4"]
    result["ratios"] = {
        "4_clients_answers_per_s_over_1": round(four["answers_per_s"] / one["answers_per_s"], 2),
        "8_clients_answers_per_s_over_1": round(
            result["8"]["answers_per_s"] / one["answers_per_s"], 2
        ),
        "4_clients_p50_over_1": round(four["p50_s"] / one["p50_s"], 2),
        "1_client_p50_over_in_process": round(one["p50_s"] / result["in_process"]["p50_s"], 2),
    }
    result["follow_up"] = {k: round(v, 3) for k, v in turns.items()}
    result["follow_up"]["turn2_over_turn1"] = round(
        turns["turn2_first_token_s"] / turns["turn1_first_token_s"], 2
    )
    result["machine"] = {
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "torch_threads": args.threads,
    }
    print(json.dumps(result, indent=2))
    if args.json is not None:
        from skyeye.atomic import write_text

        write_text(args.json, json.dumps(result, indent=2))  # never half-written
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
