"""``python -m instruct_data.from_rasters``: instruction conversations from labelled rasters.

From a YAML spec (``--spec``), the packaged spec for the shared sample data (``--shared-data``),
or one scene given on the command line (``--image`` plus ``--class-raster`` / ``--vector`` /
``--index``). Writes GeoTIFF tiles under OUT/images, OUT/conversations.jsonl (+ train/val) and
OUT/summary.json, and prints the summary table. See docs/from_rasters.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from instruct_data.from_rasters.generate import RasterInstructionGenerator
from instruct_data.from_rasters.spec import (
    TASK_NAMES,
    SpecError,
    load_spec,
    parse_label,
    parse_options,
    parse_scene,
)
from instruct_data.from_rasters.spectral import MissingBandError
from instruct_data.from_rasters.tiling import list_band_subsets
from skyeye.io.raster import RasterReadError

SHARED_SPEC = Path(__file__).parent / "specs" / "shared_data.yaml"


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _classes(s: str) -> dict[str, str]:
    out = {}
    for item in _csv(s):
        code, sep, name = item.partition("=")
        if not sep:
            raise SpecError(f"--classes: {item!r} is not CODE=NAME (e.g. 1=forest,5=water)")
        out[code.strip()] = name.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m instruct_data.from_rasters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = ap.add_argument_group("input (one of --spec, --shared-data, --image)")
    src.add_argument("--spec", type=Path, help="YAML spec of scenes and options")
    src.add_argument(
        "--shared-data",
        type=Path,
        metavar="DIR",
        help=f"run the packaged spec {SHARED_SPEC.name} on DIR (../shared/data)",
    )
    src.add_argument("--root", type=Path, help="folder the spec's relative paths resolve against")
    src.add_argument("--image", help="one scene: raster file or band-per-file folder")
    src.add_argument("--scene-id", help="id of the --image scene (default: the file stem)")
    src.add_argument("--sensor", help="sensor of --image (e.g. sentinel-2)")
    src.add_argument("--class-raster", help="land-cover raster for --image")
    src.add_argument("--vector", help="polygon file for --image (GeoPackage/GeoJSON)")
    src.add_argument("--class-field", help="attribute of --vector holding the class")
    src.add_argument("--classes", help="class table CODE=NAME,... for --class-raster / --vector")
    src.add_argument("--nodata", default="", help="class-raster codes meaning unlabelled, e.g. 0")
    src.add_argument("--index", help="spectral-index classes for --image: water,vegetation,cloud")
    src.add_argument("--water-index", default="ndwi", choices=["ndwi", "mndwi"])
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    opt = ap.add_argument_group("options (override the spec's)")
    opt.add_argument("--seed", type=int)
    opt.add_argument("--tile-size", type=int)
    opt.add_argument("--stride", type=int)
    opt.add_argument("--min-valid", type=float)
    opt.add_argument("--min-labelled", type=float)
    opt.add_argument("--tasks", type=_csv, help=f"comma list from {','.join(TASK_NAMES)}")
    opt.add_argument("--flips", action="store_true", default=None)
    opt.add_argument("--rot90", action="store_true", default=None)
    opt.add_argument("--aug-copies", type=int)
    opt.add_argument(
        "--band-subsets", type=_csv, help=f"comma list from {','.join(list_band_subsets())}"
    )
    opt.add_argument("--band-subset-mode", choices=["random", "each"])
    opt.add_argument("--val-scenes", type=_csv, help="scene ids/groups held out for validation")
    opt.add_argument("--val-fraction", type=float, help="deterministic per-scene val share")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def _cli_scene(args: argparse.Namespace) -> dict:
    labels = []
    if args.class_raster:
        labels.append(
            {
                "type": "class_raster",
                "path": args.class_raster,
                "classes": _classes(args.classes or ""),
                "nodata": [int(x) for x in _csv(args.nodata)],
            }
        )
    if args.vector:
        labels.append(
            {
                "type": "vector",
                "path": args.vector,
                "class_field": args.class_field,
                "classes": _classes(args.classes or ""),
            }
        )
    if args.index:
        labels.append(
            {"type": "index", "classes": _csv(args.index), "water_index": args.water_index}
        )
    if not labels:
        raise SpecError("--image needs a label source: --class-raster, --vector or --index")
    for i, lab in enumerate(labels):
        parse_label(dict(lab), f"label {i}")  # early, clear errors
    return {
        "id": args.scene_id or Path(args.image).stem,
        "image": {"path": args.image, "sensor": args.sensor},
        "labels": labels,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    given = [x for x in (args.spec, args.shared_data, args.image) if x]
    try:
        if len(given) != 1:
            raise SpecError("give exactly one of --spec, --shared-data DIR or --image")
        if args.image:
            root = args.root or Path.cwd()
            opts, scenes = parse_options({}), [parse_scene(_cli_scene(args), "--image scene")]
        else:
            root, opts, scenes = load_spec(args.spec or SHARED_SPEC)
            if args.shared_data:
                root = args.shared_data
            if args.root:
                root = args.root
        if not root.is_dir():
            raise SpecError(f"data root {root} is not a folder")
        for key in (
            "seed",
            "tile_size",
            "stride",
            "min_valid",
            "min_labelled",
            "tasks",
            "flips",
            "rot90",
            "aug_copies",
            "band_subsets",
            "band_subset_mode",
            "val_scenes",
            "val_fraction",
        ):
            if getattr(args, key) is not None:
                setattr(opts, key, getattr(args, key))
        opts = parse_options(vars(opts))  # re-check the overridden values
        for b in opts.band_subsets:
            if b not in list_band_subsets():
                raise SpecError(f"band subset {b!r} unknown; choose from {list_band_subsets()}")
        if (args.out / "conversations.jsonl").exists() and not args.overwrite:
            raise SpecError(
                f"{args.out} already holds conversations.jsonl: pass --overwrite or pick another --out"
            )
        summary = RasterInstructionGenerator(opts, root, args.out).run(scenes)
    except (SpecError, RasterReadError, MissingBandError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary.table())
    print(f"wrote {summary.conversations} conversations to {args.out / 'conversations.jsonl'}")
    return 0 if summary.conversations else 1


if __name__ == "__main__":
    raise SystemExit(main())
