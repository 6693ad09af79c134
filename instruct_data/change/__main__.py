"""``python -m instruct_data.change --data ../shared/data --out DIR``: change instruction data
(OSCD, AirChange, STAR-style pairs) with the committed held-out split."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from instruct_data.change.build import (
    SPLITS_FILE,
    build_change_data,
    list_change_sources,
    load_splits,
)
from skyeye.errors import DiskFullError, SpecError
from skyeye.logs import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m instruct_data.change", description=__doc__)
    ap.add_argument("--data", required=True, type=Path, help="the shared data root")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    ap.add_argument("--sources", nargs="+", choices=list_change_sources(), default=None)
    ap.add_argument("--splits", type=Path, default=SPLITS_FILE, help="held-out pairs (YAML)")
    ap.add_argument(
        "--permissive-only",
        action="store_true",
        help="leave out research / non-commercial sources (OSCD, AirChange)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    configure_logging(args.verbose)
    if not args.data.is_dir():
        print(
            f"error: --data {args.data}: no such folder: give the shared data root", file=sys.stderr
        )
        return 2
    try:
        summary = build_change_data(
            args.data,
            args.out,
            args.sources,
            splits=load_splits(args.splits),
            permissive_only=args.permissive_only,
            seed=args.seed,
        )
    except (SpecError, DiskFullError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
