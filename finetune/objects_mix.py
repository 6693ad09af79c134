"""The recipe's object and scene records (`instruct_data.objects`) as one trainable JSONL.

`instruct_data.objects` writes image paths relative to the shared data folder (the scene sets:
AID, ...) or to its own output folder (the aircraft tiles, the Slovenia tiles); the training
datasets resolve every path of a file against one folder. This stage builds the objects data into
``DATA/objects/``, copies the shared images its kept records use under ``DATA/objects/shared/``
(the shared folder is read-only and outside the work folder), and writes ``DATA/objects.jsonl``
with every path relative to ``DATA``: the folder of the recipe's ``train.jsonl``, so stage 2 and
the mask stage read both files with the same root. Only training records of the recipe's
``objects_data.datasets`` are kept (held-out sources never are), at most ``max_per_dataset`` of
each (a seeded sample: AID alone has 5,400 records, more than the rest of the mix's images).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from skyeye.atomic import atomic_open, atomic_path

logger = logging.getLogger(__name__)

OBJECTS_FILE = "objects.jsonl"
OBJECTS_DIR = "objects"


def _relocate(record: dict[str, Any], shared: Path, data: Path) -> None:
    """Rewrite ``record``'s image paths relative to ``data``, copying shared images in."""
    root = record["meta"].get("image_root")
    for image in record["images"]:
        rel = Path(image["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"record {record['id']}: image path {rel} leaves its root")
        if root == "shared":
            target = data / OBJECTS_DIR / "shared" / rel
            if not target.is_file():
                with atomic_path(target) as tmp:
                    shutil.copyfile(shared / rel, tmp)
            image["path"] = (Path(OBJECTS_DIR) / "shared" / rel).as_posix()
        elif root == "out":
            image["path"] = (Path(OBJECTS_DIR) / rel).as_posix()
        else:
            raise ValueError(f"record {record['id']}: meta.image_root {root!r} is not shared/out")


def build_objects_mix(
    section: dict[str, Any], shared: Path, data: Path, *, permissive_only: bool, seed: int
) -> Path:
    """Write ``data/objects.jsonl`` (see the module docstring); skipped when it exists.

    section: the recipe's ``objects_data`` (``datasets``: names to keep; ``max_per_dataset``:
    cap per dataset, 0 = all). Returns the file's path.
    """
    from instruct_data.objects.__main__ import build

    out_file = data / OBJECTS_FILE
    if out_file.is_file():
        return out_file
    wanted = [str(d) for d in section.get("datasets", [])]
    if not wanted:
        raise ValueError("objects_data.datasets is empty: name the object / scene sets to train on")
    cap = int(section.get("max_per_dataset", 0))
    summary = build(shared, data / OBJECTS_DIR, permissive_only=permissive_only, seed=seed)
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    with open(data / OBJECTS_DIR / "train.jsonl", encoding="utf-8") as src:
        for line in src:
            record = json.loads(line)
            dataset = str(record["meta"]["dataset"])
            if dataset in wanted and record["meta"].get("split") == "train":
                by_dataset.setdefault(dataset, []).append(record)
    rng = random.Random(seed)
    kept: list[dict[str, Any]] = []
    for dataset in wanted:
        records = by_dataset.get(dataset, [])
        if not records and not permissive_only:
            raise ValueError(
                f"objects_data: no training record of {dataset!r} was built "
                f"(skipped: {summary.get('skipped')}); check {shared / dataset}"
            )
        if 0 < cap < len(records):
            records = [records[i] for i in sorted(rng.sample(range(len(records)), cap))]
        kept.extend(records)
    for record in kept:
        _relocate(record, shared, data)
    with atomic_open(out_file, "w") as dst:
        for record in kept:
            dst.write(json.dumps(record, separators=(",", ":")) + "\n")
    counts = Counter(f"{r['meta']['dataset']}/{r['task']}" for r in kept)
    logger.info("objects mix: %d records %s", len(kept), dict(sorted(counts.items())))
    return out_file
