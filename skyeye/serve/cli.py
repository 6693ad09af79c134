"""`python -m skyeye.serve [--model M] [--host 127.0.0.1] [--port 8000] [--api-key KEY]
[--allow-files DIR] [--concurrency N] [--queue N] [--prefix-cache-mb MB] [--max-request-mb MB]
[--max-pixels N] [--dtype auto|float32|bfloat16] [--threads N]
[--jobs-dir DIR] [--max-jobs N] [--jobs-queue N] [--jobs-max-mb MB] [--jobs-retention-hours H]`.

An OpenAI-compatible chat API over a SkyEye model, and whole-scene jobs (OGC API - Processes:
/processes, /jobs); see docs/serve.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from skyeye.constants import DTYPE_NAMES
from skyeye.io.policy import DEFAULT_REQUEST_MAX_PIXELS
from skyeye.logs import configure_logging

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m skyeye.serve", description=__doc__)
    p.add_argument("--model", default="skyeye-tiny", help="bundled model, model folder or hub id")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key",
        default=os.environ.get("SKYEYE_API_KEY") or None,
        help="require 'Authorization: Bearer KEY' (default: $SKYEYE_API_KEY, which keeps the key "
        "out of the process list)",
    )
    p.add_argument(
        "--allow-files", type=Path, default=None, help="serve file:// images from under this folder"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="answers generated at once, decoded together as one batch (default 4)",
    )
    p.add_argument("--queue", type=int, default=16, help="requests that may wait; 429 beyond")
    p.add_argument(
        "--prefix-cache-mb",
        type=float,
        default=256.0,
        help="memory for the KV caches of recent image prefixes (0: off; default 256)",
    )
    p.add_argument("--max-request-mb", type=float, default=64.0, help="largest request body")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_REQUEST_MAX_PIXELS,
        help="largest width x height an image may declare (413 beyond, checked before decoding; "
        f"default {DEFAULT_REQUEST_MAX_PIXELS}); raise it to serve whole tiles through file://",
    )
    p.add_argument("--max-tokens", type=int, default=256, help="longest answer, in tokens")
    p.add_argument(
        "--jobs-dir",
        type=Path,
        default=None,
        help="folder of the /jobs API's jobs, kept across restarts (default ./skyeye-jobs)",
    )
    p.add_argument("--max-jobs", type=int, default=32, help="jobs kept at once; 429 beyond")
    p.add_argument("--jobs-queue", type=int, default=8, help="jobs that may wait; 429 beyond")
    p.add_argument(
        "--jobs-max-mb", type=float, default=4096.0, help="disk the jobs may take (507 beyond)"
    )
    p.add_argument(
        "--jobs-retention-hours",
        type=float,
        default=24.0,
        help="finished jobs are removed after this many hours",
    )
    p.add_argument(
        "--scene-max-pixels",
        type=int,
        default=200_000_000,
        help="largest width x height of a scene an analyze-scene job may read (413 beyond)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *DTYPE_NAMES],
        help="weights dtype; auto = the LLM in bfloat16 where that is fast (GPUs, CPUs with "
        "AVX512-BF16/AMX), the tower and mask decoder in float32",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of each thread that runs the model (default: half the usable "
        "cores, at least 1: the batch's decoding steps and the newcomers' prefill run side by "
        "side, each with this many)",
    )
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    logging.getLogger("skyeye.serve").setLevel(logging.INFO)
    if args.allow_files is not None and not args.allow_files.is_dir():
        print(f"error: --allow-files {args.allow_files}: not a folder", file=sys.stderr)
        return 2
    from skyeye.serve.config import ServeConfig

    try:
        config = ServeConfig(
            model=args.model,
            api_key=args.api_key,
            allow_files=args.allow_files,
            max_request_bytes=int(args.max_request_mb * 1024 * 1024),
            max_pixels=args.max_pixels,
            concurrency=args.concurrency,
            queue_size=args.queue,
            prefix_cache_mb=args.prefix_cache_mb,
            max_new_tokens=args.max_tokens,
            device=args.device,
            dtype=args.dtype,
            jobs_dir=args.jobs_dir,
            max_jobs=args.max_jobs,
            jobs_queue=args.jobs_queue,
            jobs_max_mb=args.jobs_max_mb,
            jobs_retention_hours=args.jobs_retention_hours,
            scene_max_pixels=args.scene_max_pixels,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import torch
    import uvicorn

    from skyeye.serve.app import create_app

    threads = args.threads if args.threads is not None else _usable_cores() // 2
    torch.set_num_threads(max(1, threads))

    try:
        app = create_app(config)
    except (OSError, ValueError) as err:
        print(f"error: cannot load model {args.model!r}: {err}", file=sys.stderr)
        return 2
    logger.info("serving %s on http://%s:%d/v1", config.model_id, args.host, args.port)
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning"
    )
    return 0


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform says)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1
