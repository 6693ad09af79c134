"""The demo's command line: `python -m demo` options and `--auth` / `--auth-file` logins."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from demo.examples import DEFAULT_EXAMPLES_DIR
from skyeye.constants import DTYPE_NAMES
from skyeye.io.policy import DEFAULT_REQUEST_MAX_PIXELS
from skyeye.scene.pipeline import DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_WINDOW

USAGE = "python -m demo [--model skyeye-tiny] [--host 127.0.0.1] [--port 7860]"


def parse_auth(values: Sequence[str], files: Sequence[Path] = ()) -> list[tuple[str, str]]:
    """`USER:PASS` strings (and lines of `--auth-file` files) -> [(user, password)].

    Raises:
        ValueError: a value without a user or a password, naming it (never the password).
    """
    pairs = []
    lines = [(v, "--auth") for v in values]
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(f"--auth-file {path}: cannot read it ({err.strerror})") from None
        lines += [(line.strip(), f"--auth-file {path}") for line in text.splitlines()]
    for value, origin in lines:
        if not value or value.startswith("#"):
            continue
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            raise ValueError(
                f"{origin}: expected USER:PASSWORD, got {user or '(empty)'!r} without a "
                "user or a password"
            )
        pairs.append((user, password))
    return pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo", description=f"The SkyEye Gradio app: {USAGE}."
    )
    parser.add_argument(
        "--model", default="skyeye-tiny", help="bundled model, model folder or hub id"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 = all)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest accepted file")
    parser.add_argument(
        "--max-total-upload-mb",
        type=float,
        default=1000.0,
        help="all the files of one conversation together",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_REQUEST_MAX_PIXELS,
        help="largest width x height an upload may declare (checked before decoding)",
    )
    parser.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="USER:PASS",
        help="require a login (repeatable); prefer --auth-file: arguments show in `ps`",
    )
    parser.add_argument(
        "--auth-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="file of USER:PASS lines, one login each",
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="answers generated at the same time (queue)"
    )
    parser.add_argument("--queue-size", type=int, default=32, help="waiting requests before 'busy'")
    parser.add_argument("--max-images", type=int, default=8, help="images per conversation")
    parser.add_argument(
        "--read-size", type=int, default=512, help="longest side images are read at"
    )
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument(
        "--no-scene",
        action="store_true",
        help="the whole-scene switch starts off (large images answered as read)",
    )
    parser.add_argument(
        "--scene-window", type=int, default=DEFAULT_WINDOW, help="scene window side in pixels"
    )
    parser.add_argument(
        "--scene-overlap", type=int, default=DEFAULT_OVERLAP, help="scene window overlap, px"
    )
    parser.add_argument(
        "--scene-batch", type=int, default=DEFAULT_BATCH, help="scene windows per model call"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPE_NAMES])
    parser.add_argument("--examples-dir", type=Path, default=DEFAULT_EXAMPLES_DIR)
    parser.add_argument("--cache-dir", default=None, help="where the embedded LLM is cached")
    parser.add_argument("--verbose", action="store_true")
    return parser
