"""Build the change instruction sets: sources -> pairs -> tiles and conversations, split by the
committed split file (whole cities / pairs / scenes held out)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

from instruct_data.change.airchange import airchange_pairs
from instruct_data.change.licences import get_licence
from instruct_data.change.oscd import oscd_pairs
from instruct_data.change.pairs import ChangePair, PairRecords
from instruct_data.change.star import StarPairs
from instruct_data.schema import dumps_record, validate_record
from skyeye.atomic import atomic_open, write_text
from skyeye.errors import SkipRecord, SpecError
from skyeye.scene.config import DEFAULT_WINDOW

logger = logging.getLogger(__name__)

SPLITS_FILE = Path(__file__).with_name("splits.yaml")
STAR_SPEC = Path(__file__).parents[1] / "from_rasters" / "specs" / "shared_data.yaml"


@dataclass(frozen=True)
class SourceInfo:
    """folder: under the data root. tile_size / stride: px of the tiles cut from each pair;
    scene_scale: (size, stride) of a second set of tiles at the whole-scene pipeline's window
    size (`skyeye.scene` reads 512-px windows), so the decoder also learns change at the scale
    it is used at (None: the pairs are too small, or they are cut by their own spec)."""

    folder: str
    tile_size: int
    stride: int
    pairs: Callable[[Path, list[str]], Iterator[ChangePair | SkipRecord]]
    scene_scale: tuple[int, int] | None = None


#: px: the whole-scene pipeline's default window, the scale the change decoder is used at.
SCENE_WINDOW = DEFAULT_WINDOW


def _star(root: Path, val: list[str]) -> Iterator[ChangePair | SkipRecord]:
    return StarPairs(STAR_SPEC, root, val, scene_size=SCENE_WINDOW).pairs()


#: Change sources: name -> where and how (plain-dict registry).
CHANGE_SOURCES: dict[str, SourceInfo] = {
    # 10 m: 128 px = 1.28 km; cities are 339..858 px a side
    "oscd-s2-change": SourceInfo("oscd-s2-change", 128, 96, oscd_pairs, (SCENE_WINDOW, 384)),
    # 1.5 m: 256 px = 384 m; pairs are 952 x 640 px
    "sztaki-airchange": SourceInfo(
        "sztaki-airchange", 256, 192, airchange_pairs, (SCENE_WINDOW, 384)
    ),
    # tiles cut by the spec's own tile sizes (and SCENE_WINDOW where a scene has room); each
    # pair is one tile
    "star-pairs": SourceInfo(".", 4096, 4096, _star),
}


def list_change_sources() -> list[str]:
    return sorted(CHANGE_SOURCES)


def get_change_source(name: str) -> SourceInfo:
    if name not in CHANGE_SOURCES:
        raise KeyError(f"unknown change source {name!r}; choose from {list_change_sources()}")
    return CHANGE_SOURCES[name]


def load_splits(path: Path = SPLITS_FILE) -> dict[str, list[str]]:
    """source -> held-out pair ids (cities, pairs, scene groups) from the split file."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"{path}: cannot read the split file ({err})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the split file must map each source to {{val: [...]}}")
    out = {}
    for source, entry in raw.items():
        val = entry.get("val") if isinstance(entry, dict) else None
        if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
            raise SpecError(f"{path}: {source}.val must be a list of pair ids")
        out[str(source)] = list(val)
    return out


@dataclass
class ChangeSummary:
    """Counts of one build: records per source and split, tiles, pairs, skips by reason."""

    records: Counter = field(default_factory=Counter)  # "source/split" -> n
    pairs: Counter = field(default_factory=Counter)
    tiles: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            k: dict(sorted(getattr(self, k).items()))
            for k in ("records", "pairs", "tiles", "skipped")
        }


def build_change_data(
    data_root: Path,
    out_dir: Path,
    sources: list[str] | None = None,
    *,
    splits: dict[str, list[str]] | None = None,
    permissive_only: bool = False,
    seed: int = 0,
) -> ChangeSummary:
    """Write ``out_dir/{conversations,train,val}.jsonl``, ``images/`` and ``summary.json``.

    permissive_only: leave out the sources whose licence forbids commercial use.
    """
    splits = load_splits() if splits is None else splits
    names = sources or list_change_sources()
    for name in names:
        get_change_source(name)
    if permissive_only:
        names = [n for n in names if get_licence(n).commercial]
    summary = ChangeSummary()
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:  # each file renamed into place when complete
        files = {
            n: stack.enter_context(atomic_open(out_dir / f"{n}.jsonl", "w"))
            for n in ("conversations", "train", "val")
        }
        for name in names:
            info = get_change_source(name)
            root = data_root / info.folder
            if not root.is_dir():
                summary.skipped[f"{name}: no folder {root}"] += 1
                logger.warning("%s: no folder %s: skipped", name, root)
                continue
            writers = [PairRecords(out_dir, info.tile_size, info.stride, seed=seed)]
            if info.scene_scale is not None:
                size, stride = info.scene_scale
                tag, larger = f"s{size}", info.tile_size + 1  # pairs the first tiling cuts up
                writers.append(
                    PairRecords(out_dir, size, stride, seed=seed, tag=tag, min_side=larger)
                )
            for pair in tqdm(info.pairs(root, splits.get(name, [])), desc=name, unit="pair"):
                if isinstance(pair, SkipRecord):
                    summary.skipped[f"{name}: {pair.reason}"] += 1
                    logger.warning("%s: skipped %s", name, pair)
                    continue
                summary.pairs[f"{name}/{pair.split}"] += 1
                for rec in (r for writer in writers for r in writer.records(pair)):
                    d = rec.to_dict()
                    problems = validate_record(d)
                    if problems:  # a builder bug, not bad input: fail loudly
                        raise RuntimeError(f"built an invalid record {d['id']}: {problems}")
                    line = dumps_record(d) + "\n"
                    files["conversations"].write(line)
                    files[pair.split].write(line)
                    summary.records[f"{name}/{pair.split}"] += 1
            summary.tiles[name] = sum(w.tiles for w in writers)
            for writer in writers:
                for reason, n in writer.skipped.items():
                    summary.skipped[f"{name}: tile {reason}"] += n
    write_text(out_dir / "summary.json", json.dumps(summary.as_dict(), indent=2) + "\n")
    return summary
