"""``python -m instruct_data.convert --source S --input PATH --images ROOT --out FILE.jsonl``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from instruct_data.convert import get_converter, list_converters, run_conversion
from skyeye.atomic import write_text
from skyeye.errors import DataFileError, DiskFullError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m instruct_data.convert", description=__doc__)
    ap.add_argument("--source", required=True, choices=list_converters())
    ap.add_argument(
        "--input", required=True, type=Path, help="annotation file or folder of the source"
    )
    ap.add_argument(
        "--images", required=True, type=Path, help="root the record image paths are relative to"
    )
    ap.add_argument("--out", required=True, type=Path, help="output JSON Lines file")
    ap.add_argument("--report-json", type=Path, help="also write the summary counts as JSON here")
    ap.add_argument(
        "--allow-absolute-paths",
        action="store_true",
        help="accept absolute image paths in the input records (default: refused, as are paths "
        "that leave --images with '..'; only for data files you trust)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.input.exists():
        print(f"error: --input {args.input} does not exist", file=sys.stderr)
        return 2
    if not args.images.is_dir():
        print(f"error: --images {args.images} is not a folder", file=sys.stderr)
        return 2
    try:
        report = run_conversion(
            get_converter(args.source),
            args.input,
            args.images,
            args.out,
            allow_absolute=args.allow_absolute_paths,
        )
        print(report.table())
        if args.report_json:
            write_text(args.report_json, json.dumps(report.as_dict(), indent=2) + "\n")
    except (DataFileError, DiskFullError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or args.out}: {err.strerror}", file=sys.stderr)
        return 2
    return 0 if report.written else 1


if __name__ == "__main__":
    raise SystemExit(main())
