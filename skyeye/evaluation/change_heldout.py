"""The change baselines on held-out change records (``python -m instruct_data.change``'s val.jsonl).

Each tile pair is scored once, on the mask of its "what changed" answer (the whole change mask;
the record ids end in ``:what``), per dataset (``meta.dataset``): the unit the future change
decoder is scored on, so its numbers and these stand side by side. A record whose images or mask
cannot be read is skipped and counted by reason.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from skyeye.data.record_image import read_record_image
from skyeye.errors import ImagePathError, RasterReadError, UnsafePathError
from skyeye.evaluation.change_baselines import CHANGE_BASELINES, change_scores
from skyeye.io.rle import decode_rle

logger = logging.getLogger(__name__)

__all__ = ["WHOLE_CHANGE_SUFFIX", "iter_change_pairs", "read_change_pair", "score_change_records"]

#: Id suffix of the record whose mask is a tile pair's whole change mask.
WHOLE_CHANGE_SUFFIX = ":what"


def read_change_pair(record: dict, root: Path) -> tuple[Any, Any, np.ndarray]:
    """A change record's (before, after) images (paths under ``root``; read as training reads
    them, `read_record_image`: band names, wavelengths, sensor) and its first mask."""
    images = [read_record_image(ref, root) for ref in record["images"][:2]]
    mask = decode_rle(record["turns"][1]["masks"][0]["rle"]).astype(bool)
    return images[0], images[1], mask


def iter_change_pairs(
    jsonl: Path,
    root: Path,
    wanted: Callable[[dict], bool],
    skipped: Counter,
    desc: str = "change pairs",
) -> Iterator[tuple[dict, Any, Any, np.ndarray]]:
    """(record, before, after, change mask) of each record of ``jsonl`` that ``wanted`` accepts
    (image paths under ``root``; ``wanted`` is asked lazily, as records are reached). A record
    that is not a JSON object, or whose images or mask cannot be read, is skipped and counted in
    ``skipped`` by reason."""
    with open(jsonl, encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    for line in tqdm(lines, desc=desc, unit="record"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            skipped["malformed record"] += 1
            continue
        if not wanted(record):
            continue
        try:
            before, after, target = read_change_pair(record, root)
        except (ImagePathError, UnsafePathError):
            skipped["missing image"] += 1
            continue
        except (RasterReadError, KeyError, IndexError, ValueError, TypeError):
            skipped["unreadable record"] += 1
            continue
        yield record, before, after, target


def score_change_records(
    jsonl: Path, root: Path, baselines: Sequence[str] | None = None
) -> dict[str, Any]:
    """{"datasets": {dataset: {baseline: change_scores}}, "skipped": {reason: n}} over the
    whole-change records of ``jsonl`` (image paths under ``root``)."""
    names = list(baselines or CHANGE_BASELINES)
    preds: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    targets: dict[str, list[np.ndarray]] = defaultdict(list)
    valids: dict[str, list[np.ndarray]] = defaultdict(list)
    skipped: Counter = Counter()

    def whole(record: dict) -> bool:
        return str(record.get("id", "")).endswith(WHOLE_CHANGE_SUFFIX)

    for record, before, after, target in iter_change_pairs(jsonl, root, whole, skipped):
        dataset = str((record.get("meta") or {}).get("dataset", record.get("source")))
        targets[dataset].append(target)
        valids[dataset].append(before.valid_mask & after.valid_mask)
        for name in names:
            preds[dataset][name].append(CHANGE_BASELINES[name](before, after))
    datasets = {
        ds: {name: change_scores(preds[ds][name], targets[ds], valids[ds]) for name in names}
        for ds in targets
    }
    return {"datasets": datasets, "skipped": dict(skipped)}
