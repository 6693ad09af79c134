"""``python -m instruct_data.mix --spec mix.yaml --out train.jsonl``: weighted mixing, dedup,
deterministic shuffle and train/val split of unified JSONL files.

Spec (YAML)::

    seed: 0                # shuffle / sampling / split seed
    val_fraction: 0.02     # share of distinct conversations held out for validation
    dedup: true            # drop repeated conversations (same images and turn texts), first kept
    sources:
      - {path: skyeyegpt.jsonl, weight: 1.0}
      - {path: terrascope.jsonl, weight: 2.5, max: 50000}   # weight: expected copies per record

Only byte offsets and 8-byte hashes are held in memory; records are re-read when written. All
copies of one conversation land in the same split, so repeats never leak into validation.
Relative ``path`` entries resolve against the spec file's folder.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from instruct_data.jsonstream import BAD_BYTES, BAD_JSON
from skyeye.atomic import atomic_open
from skyeye.errors import DataFileError, DiskFullError

logger = logging.getLogger(__name__)
NOT_A_RECORD = "not a record (id, images, turns)"


@dataclass
class MixSource:
    path: Path
    weight: float = 1.0
    max: int | None = None


@dataclass
class MixSpec:
    sources: list[MixSource]
    seed: int = 0
    val_fraction: float = 0.0
    dedup: bool = True

    @classmethod
    def from_yaml(cls, path: Path) -> MixSpec:
        d = yaml.safe_load(path.read_text()) or {}
        if not isinstance(d, dict) or not isinstance(d.get("sources"), list) or not d["sources"]:
            raise ValueError(
                f"{path}: the spec needs a non-empty 'sources' list of {{path, weight}}"
            )
        srcs = []
        for s in d["sources"]:
            if not isinstance(s, dict) or "path" not in s:
                raise ValueError(f"{path}: every source needs a 'path' (got {s!r})")
            p = Path(s["path"])
            w = float(s.get("weight", 1.0))
            if w < 0:
                raise ValueError(f"{path}: weight of {p} is negative")
            srcs.append(MixSource(p if p.is_absolute() else path.parent / p, w, s.get("max")))
        vf = float(d.get("val_fraction", 0.0))
        if not 0 <= vf < 1:
            raise ValueError(f"{path}: val_fraction must be in [0, 1), got {vf}")
        return cls(srcs, int(d.get("seed", 0)), vf, bool(d.get("dedup", True)))


def _h(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


def content_key(rec: dict) -> int:
    """Hash of what makes a conversation: its image paths and turn texts (not its id)."""
    return _h(
        [i["path"] for i in rec.get("images", [])], [(t["role"], t["text"]) for t in rec["turns"]]
    )


@dataclass
class MixReport:
    """Counts of one mix: per source, lines read (non-blank, up to ``max``) and bad lines
    skipped by reason; duplicates dropped; records written to each split."""

    read: dict[str, int]
    duplicates: int
    train: int
    val: int
    skipped: dict[str, Counter] = field(default_factory=dict)


def _parse_line(line: bytes) -> tuple[dict | None, str]:
    """(record, "") or (None, reason) for one JSONL line."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return None, BAD_BYTES
    except (json.JSONDecodeError, RecursionError):
        return None, BAD_JSON
    if not isinstance(rec, dict):
        return None, NOT_A_RECORD
    try:
        content_key(rec)
        if not isinstance(rec.get("id"), str):
            raise TypeError("id")
    except (KeyError, TypeError, AttributeError):
        return None, NOT_A_RECORD
    return rec, ""


def mix(spec: MixSpec, out: Path, val_out: Path | None = None) -> MixReport:
    """Write the mixture: ``out`` (train) and ``val_out`` (when val_fraction > 0).

    A line that is not UTF-8 JSON holding a record (``id``, ``images``, ``turns``) is skipped and
    counted by reason. Both outputs are written under temporary names and renamed when complete.
    Raises `DataFileError` when a source cannot be read.
    """
    seen: set[int] = set()
    picks: list[
        tuple[int, int, int, int, bool]
    ] = []  # (order key, source idx, offset, copy, is_val)
    read: dict[str, int] = {}
    skipped: dict[str, Counter] = {}
    dups = 0
    for si, src in enumerate(spec.sources):
        n = 0
        bad: Counter = Counter()
        try:
            f = open(src.path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as e:
            raise DataFileError(f"{src.path}: cannot open the source: {e.strerror}") from None
        with f:
            for number, line, off in _lines(f):
                if src.max is not None and n >= src.max:
                    break
                n += 1
                rec, reason = _parse_line(line)
                if rec is None:
                    bad[reason] += 1
                    if sum(bad.values()) <= 10:
                        logger.warning("%s:%d: skipped (%s)", src.path, number, reason)
                    continue
                key = content_key(rec)
                if spec.dedup:
                    if key in seen:
                        dups += 1
                        continue
                    seen.add(key)
                u = (_h(spec.seed, "w", key) % 10**9) / 1e9
                copies = int(src.weight) + (u < src.weight - int(src.weight))
                is_val = (_h(spec.seed, "val", key) % 10**9) / 1e9 < spec.val_fraction
                for c in range(copies if not is_val else min(copies, 1)):
                    picks.append((_h(spec.seed, "order", key, c), si, off, c, is_val))
        read[str(src.path)] = n
        skipped[str(src.path)] = bad
    picks.sort()
    counts = {False: 0, True: 0}
    val_out = val_out or out.with_name(out.stem + ".val.jsonl")
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(open(s.path, "rb")) for s in spec.sources]
        ft = stack.enter_context(atomic_open(out, "w"))
        fv = stack.enter_context(atomic_open(val_out, "w")) if spec.val_fraction else None
        for _, si, off, c, is_val in picks:
            handles[si].seek(off)
            rec = json.loads(handles[si].readline())
            if c:
                rec["id"] = f"{rec['id']}~r{c}"  # repeats keep ids unique
            (fv if is_val else ft).write(  # type: ignore[union-attr]
                json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n"
            )
            counts[is_val] += 1
    return MixReport(
        read=read, duplicates=dups, train=counts[False], val=counts[True], skipped=skipped
    )


def _lines(handle: Any) -> Any:
    """(line number, bytes, byte offset) of each non-blank line of a binary file."""
    number = 0
    while True:
        off = handle.tell()
        line = handle.readline()
        if not line:
            return
        number += 1
        if line.strip():
            yield number, line, off


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m instruct_data.mix",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--spec", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="train JSONL")
    ap.add_argument("--val-out", type=Path, help="validation JSONL (default: <out stem>.val.jsonl)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        spec = MixSpec.from_yaml(args.spec)
        missing = [str(s.path) for s in spec.sources if not s.path.is_file()]
        if missing:
            raise ValueError(f"source files not found: {missing}")
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        rep = mix(spec, args.out, args.val_out)
    except (DataFileError, DiskFullError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p, n in rep.read.items():
        bad = rep.skipped.get(p) or {}
        why = "".join(f"; skipped {k}: {v}" for k, v in sorted(bad.items()))
        print(f"read {n:>8}  {p}{why}")
    print(f"duplicates dropped {rep.duplicates}; train {rep.train}; val {rep.val}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
