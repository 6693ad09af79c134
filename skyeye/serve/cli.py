"""`python -m skyeye.serve [--model M] [--host 127.0.0.1] [--port 8000] [--api-key KEY]
[--allow-files DIR] [--concurrency N] [--queue N] [--max-request-mb MB] [--max-pixels N]`.

An OpenAI-compatible chat API over a SkyEye model; see docs/serve.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from skyeye.io.policy import DEFAULT_REQUEST_MAX_PIXELS
from skyeye.logs import configure_logging

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m skyeye.serve", description=__doc__)
    p.add_argument("--model", default="skyeye-tiny", help="bundled model, model folder or hub id")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    p.add_argument(
        "--allow-files", type=Path, default=None, help="serve file:// images from under this folder"
    )
    p.add_argument("--concurrency", type=int, default=1, help="answers generated at once")
    p.add_argument("--queue", type=int, default=16, help="requests that may wait; 429 beyond")
    p.add_argument("--max-request-mb", type=float, default=64.0, help="largest request body")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_REQUEST_MAX_PIXELS,
        help="largest width x height an image may declare (413 beyond, checked before decoding; "
        f"default {DEFAULT_REQUEST_MAX_PIXELS}); raise it to serve whole tiles through file://",
    )
    p.add_argument("--max-tokens", type=int, default=256, help="longest answer, in tokens")
    p.add_argument("--device", default="cpu")
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
            max_new_tokens=args.max_tokens,
            device=args.device,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import uvicorn

    from skyeye.serve.app import create_app

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
