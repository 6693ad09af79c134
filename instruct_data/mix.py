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
import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)


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
    read: dict[str, int]
    duplicates: int
    train: int
    val: int


def mix(spec: MixSpec, out: Path, val_out: Path | None = None) -> MixReport:
    """Write the mixture: ``out`` (train) and ``val_out`` (when val_fraction > 0)."""
    seen: set[int] = set()
    picks: list[
        tuple[int, int, int, int, bool]
    ] = []  # (order key, source idx, offset, copy, is_val)
    read: dict[str, int] = {}
    dups = 0
    for si, src in enumerate(spec.sources):
        n = 0
        with open(src.path, "rb") as f:
            while True:
                off = f.tell()
                line = f.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                if src.max is not None and n >= src.max:
                    break
                n += 1
                key = content_key(json.loads(line))
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
    picks.sort()
    counts = {False: 0, True: 0}
    handles = [open(s.path, "rb") for s in spec.sources]  # noqa: SIM115 - closed below
    val_out = val_out or out.with_name(out.stem + ".val.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(out, "w", encoding="utf-8") as ft, open(val_out, "w", encoding="utf-8") as fv:
            for _, si, off, c, is_val in picks:
                handles[si].seek(off)
                rec = json.loads(handles[si].readline())
                if c:
                    rec["id"] = f"{rec['id']}~r{c}"  # repeats keep ids unique
                (fv if is_val else ft).write(
                    json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n"
                )
                counts[is_val] += 1
    finally:
        for h in handles:
            h.close()
    if not spec.val_fraction:
        val_out.unlink()
    return MixReport(read=read, duplicates=dups, train=counts[False], val=counts[True])


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
    rep = mix(spec, args.out, args.val_out)
    for p, n in rep.read.items():
        print(f"read {n:>8}  {p}")
    print(f"duplicates dropped {rep.duplicates}; train {rep.train}; val {rep.val}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
