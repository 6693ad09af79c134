"""`python -m skyeye.batch --inputs (FOLDER|GLOB|LIST.txt|ITEMS.json) --prompt "..." --out DIR
[--model M] [--workers N] [--address ray://HOST:10001]`.

Every scene goes through the whole-scene pipeline (`skyeye.scene`) on a Ray worker that loaded
the model once; outputs land in DIR/scenes/<scene>/ and one table DIR/summary.parquet
(GeoParquet; ``--format gpkg`` for GeoPackage, rewritten as each scene finishes) has a row per
input entry: id, datetime, answer, area, footprint, status (done, failed, skipped: not a scene)
and the reason. Run it again to
finish an interrupted batch: scenes done by a run of the same prompt, model, settings and files
are skipped, the rest analysed. One batch at a time per DIR: a second exits 2 naming the first.
``--workers 0`` runs a plain loop in this process (no Ray). See docs/batch.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from skyeye.logs import configure_logging

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m skyeye.batch", description=__doc__)
    p.add_argument("--inputs", required=True, help="folder, glob, .txt list or STAC ItemCollection")
    p.add_argument("--prompt", required=True, help="the question asked about every scene")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--model", default="skyeye-tiny", help="bundled model, model folder or hub id")
    p.add_argument("--workers", type=int, default=2, help="Ray workers (0: plain loop, no Ray)")
    p.add_argument("--address", default=None, help="existing Ray cluster (ray://HOST:10001, auto)")
    p.add_argument(
        "--threads", type=int, default=None,
        help="torch threads per worker (default: Ray workers share this machine's cores, "
        "1 each on a cluster; the plain loop uses torch's default)",
    )  # fmt: skip
    p.add_argument("--format", choices=("parquet", "gpkg"), default="parquet")
    p.add_argument("--window", type=int, default=None, help="window side in pixels (scene default)")
    p.add_argument("--overlap", type=int, default=None)
    p.add_argument("--batch", type=int, default=None, help="windows per model call")
    p.add_argument("--gsd", type=float, default=None, help="output pixel size (scene CRS units)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if args.workers < 0:
        print("error: --workers must be 0 (plain loop) or more", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print("error: --threads must be 1 or more (leave it out for the default)", file=sys.stderr)
        return 2
    if not args.prompt.strip():
        print("error: --prompt is empty: ask a question about the scenes", file=sys.stderr)
        return 2
    from skyeye.batch.inputs import collect_scenes
    from skyeye.batch.runner import run_local, run_ray
    from skyeye.batch.summary import SummaryFile
    from skyeye.errors import RunLockedError
    from skyeye.scene.lock import RunLock

    try:
        scenes = collect_scenes(args.inputs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    options = {"max_new_tokens": args.max_new_tokens}
    for name in ("window", "overlap", "batch", "gsd"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    out: Path = args.out
    try:
        lock = RunLock(out, "skyeye.batch")
        lock.acquire()
    except (RunLockedError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = SummaryFile(out / f"summary.{args.format}", scenes)
    try:  # held until the summary is written; it is rewritten as each scene finishes
        if args.workers == 0:
            result = run_local(
                scenes, out, args.prompt, args.model, options,
                threads=args.threads, on_rows=summary.add,
            )  # fmt: skip
        else:
            result = run_ray(
                scenes, out, args.prompt, args.model, options,
                workers=args.workers, address=args.address, threads=args.threads,
                on_rows=summary.add,
            )  # fmt: skip
        rows = result.rows
    finally:
        lock.release()
    failed = result.failed
    done = sum(r["status"] == "done" for r in rows)
    not_scenes = sum(r["status"] == "skipped" for r in rows)
    print(
        f"{len(rows)} entries: {done} done ({result.skipped} from an earlier run), "
        f"{len(failed)} failed, {not_scenes} not scenes; summary: {summary.path}",
        file=sys.stderr,
    )
    for row in failed:
        print(f"  failed {row['source']}: {row['reason']}", file=sys.stderr)
    return 0
