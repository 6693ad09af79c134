"""``python -m instruct_data.validate FILE [--root DIR] [--model M]``: check a unified JSONL file.

Streams the file (memory bounded by the small counters kept, plus 8 bytes per id for the
duplicate check): UTF-8 and JSON per line, schema, image paths inside ``--root`` (absolute ones
only with ``--allow-absolute-paths``), every image opened (FIFOs and devices refused before
opening), band counts and wavelengths against the files and the Sentinel-2 table, [SEG]<->mask
counts, mask size against the image size, statistics, and, with ``--model``, token lengths:
a record longer than the model's context is invalid.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from tqdm import tqdm

from instruct_data.bands import S2_WAVELENGTHS
from instruct_data.schema import validate_record
from skyeye.atomic import write_text
from skyeye.errors import DataFileError, DiskFullError, ImagePathError, UnsafePathError
from skyeye.io.paths import band_folder_files, resolve_image

logger = logging.getLogger(__name__)
WAVELENGTH_TOL = 0.02  # µm: published tables differ by a few nm


@lru_cache(maxsize=4096)
def band_count(path: str) -> int | None:
    """Bands in a file (rasterio, then PIL) or a band-per-file folder (each band file opened);
    None if unreadable. Call it only on paths `skyeye.io.paths.check_readable` accepted (a FIFO
    would block the open)."""
    p = Path(path)
    if p.is_dir():
        try:
            files = band_folder_files(p)
        except ImagePathError:
            return None
        counts = [band_count(str(f)) for f in files]
        return None if None in counts else sum(counts)  # type: ignore[arg-type]
    try:
        import warnings

        import rasterio

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PNG/JPEG without georeference is fine here
            with rasterio.open(p) as ds:
                return ds.count
    except Exception:  # noqa: BLE001 - fall back to PIL for odd PNG/JPEG
        try:
            from PIL import Image

            with Image.open(p) as im:
                im.verify()
                return len(im.getbands())
        except Exception:  # noqa: BLE001
            return None


def image_problems(
    rec: dict, root: Path, check_bands: bool, allow_absolute: bool = False
) -> list[str]:
    """Paths outside the root, missing or unreadable files (each one is opened), band-count and
    wavelength mismatches, mask sizes differing from the image."""
    out: list[str] = []
    for i, im in enumerate(rec.get("images", [])):
        paths = im["path"] if isinstance(im["path"], list) else [im["path"]]
        try:
            full = [
                str(resolve_image(p, root, allow_absolute=allow_absolute)) for p in paths
            ]
        except UnsafePathError as err:
            out.append(f"images[{i}]: path outside the image root: {err}")
            continue
        except ImagePathError as err:
            missing = str(err).startswith("missing image")
            out.append(f"images[{i}]: " + (f"missing file {paths}" if missing else str(err)))
            continue
        names, wls = im.get("band_names"), im.get("wavelengths")
        if names and wls:
            for n, w in zip(names, wls, strict=False):
                ref = S2_WAVELENGTHS.get(n)
                if ref is not None and w is not None and abs(ref - w) > WAVELENGTH_TOL:
                    out.append(
                        f"images[{i}]: band {n} has wavelength {w} µm, Sentinel-2 says {ref}"
                    )
        if check_bands:
            counts = [band_count(f) for f in full]
            unreadable = [p for p, c in zip(paths, counts, strict=True) if c is None]
            if unreadable:
                out.append(f"images[{i}]: unreadable image {unreadable[0]}")
            elif names and sum(counts) != len(names):  # type: ignore[arg-type]
                out.append(
                    f"images[{i}]: {len(names)} band_names but the files hold {sum(counts)} bands"
                )  # type: ignore[arg-type]
    for j, t in enumerate(rec.get("turns", [])):
        for k, m in enumerate(t.get("masks", [])):
            ims = rec.get("images", [])
            idx = m.get("image_index", 0)
            size = ims[idx].get("size") if idx < len(ims) else None
            if size and m["rle"]["size"] != size:
                out.append(
                    f"turns[{j}].masks[{k}]: mask size {m['rle']['size']} != image size {size}"
                )
    return out


@dataclass
class ValidationReport:
    lines: int = 0
    valid: int = 0
    invalid: int = 0
    problems: Counter = field(default_factory=Counter)  # problem kind -> count
    examples: list[str] = field(default_factory=list)
    tasks: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)
    modalities: Counter = field(default_factory=Counter)
    turns: Counter = field(default_factory=Counter)
    images_per_record: Counter = field(default_factory=Counter)
    boxes: int = 0
    masks: int = 0
    duplicate_ids: int = 0
    token_max: int = 0
    token_sum: int = 0
    over_context: int = 0

    def as_dict(self) -> dict:
        d = {
            k: (dict(sorted(v.items(), key=str)) if isinstance(v, Counter) else v)
            for k, v in self.__dict__.items()
        }
        d["token_mean"] = (
            round(self.token_sum / self.valid, 1) if self.valid and self.token_sum else None
        )
        return d

    def table(self) -> str:
        rows = [
            f"lines {self.lines}  valid {self.valid}  invalid {self.invalid}  duplicate ids {self.duplicate_ids}"
        ]
        rows += [f"  problem: {k}: {n}" for k, n in self.problems.most_common()]
        for name in ("sources", "tasks", "modalities", "turns", "images_per_record"):
            c: Counter = getattr(self, name)
            rows.append(f"{name}: " + ", ".join(f"{k}={n}" for k, n in sorted(c.items(), key=str)))
        rows.append(f"boxes {self.boxes}  masks {self.masks}")
        if self.token_max:
            rows.append(
                f"tokens: max {self.token_max}  mean {self.as_dict()['token_mean']}  over context {self.over_context}"
            )
        rows += [f"  e.g. {e}" for e in self.examples]
        return "\n".join(rows)


def _kind(problem: str) -> str:
    """Group a problem message by its field path without indices (for counting)."""
    head, _, msg = problem.partition(": ")

    return re.sub(r"\[\d+\]", "[]", head) + ": " + re.sub(r"\d+", "N", msg)[:60]


def validate_file(
    path: Path,
    root: Path | None = None,
    check_bands: bool = True,
    count_tokens: Callable[[dict], int] | None = None,
    max_tokens: int | None = None,
    max_examples: int = 10,
    allow_absolute: bool = False,
) -> ValidationReport:
    """Stream ``path`` and return the report; image paths resolve against ``root`` (default: cwd).

    A line is valid only when it is UTF-8 JSON passing the schema, every image lies under
    ``root`` and opens (unless ``check_bands`` is off), and, with ``count_tokens`` and
    ``max_tokens``, it fits the context. Raises `DataFileError` when ``path`` cannot be read.
    """
    root = root or Path.cwd()
    rep = ValidationReport()
    seen: set[bytes] = set()
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as err:
        raise DataFileError(f"{path}: cannot open the file: {err.strerror}") from None
    with handle:
        for n, raw in enumerate(tqdm(handle, desc="validate", unit="line", leave=False), 1):
            if not raw.strip():
                continue
            rep.lines += 1
            probs, rec = _line_problems(raw, root, check_bands, allow_absolute)
            if not probs and count_tokens is not None:
                k = count_tokens(rec)
                rep.token_max, rep.token_sum = max(rep.token_max, k), rep.token_sum + k
                if max_tokens and k > max_tokens:
                    rep.over_context += 1
                    probs = [f"tokens: {k} tokens > the model's context {max_tokens}"]
            if not probs:
                rep.valid += 1
                _stats(rec, rep, seen)
                continue
            rep.invalid += 1
            for p in probs:
                rep.problems[_kind(p)] += 1
            if len(rep.examples) < max_examples:
                rep.examples.append(f"line {n}: {probs[0]}")
    return rep


def _line_problems(
    raw: bytes, root: Path, check_bands: bool, allow_absolute: bool
) -> tuple[list[str], dict]:
    """(problems, record) of one line; the record is {} when the line does not decode."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return [f"line: non-UTF-8 bytes (byte {e.start})"], {}
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        return [f"line: invalid JSON ({e.msg})"], {}
    except RecursionError:
        return ["line: invalid JSON (nested too deeply)"], {}
    try:
        probs = validate_record(rec)
        if not probs:
            probs = image_problems(rec, root, check_bands, allow_absolute)
    except Exception as e:  # noqa: BLE001 - a record of unexpected shape is invalid, not fatal
        probs = [f"record: cannot be checked ({type(e).__name__}: {e})"]
    return probs, rec


def _stats(rec: dict, rep: ValidationReport, seen: set[bytes]) -> None:
    h = hashlib.blake2b(rec["id"].encode(), digest_size=8).digest()
    rep.duplicate_ids += h in seen
    seen.add(h)
    rep.tasks[rec["task"]] += 1
    rep.sources[rec["source"]] += 1
    rep.turns[len(rec["turns"])] += 1
    rep.images_per_record[len(rec["images"])] += 1
    for im in rec["images"]:
        rep.modalities[im["modality"]] += 1
    for t in rec["turns"]:
        rep.boxes += len(t.get("boxes", []))
        rep.masks += len(t.get("masks", []))


def processor_token_counter(model: str) -> tuple[Callable[[dict], int], int | None]:
    """Token counter from the model's processor: the chat-templated text, each ``<image>``
    counted as ``num_image_tokens`` positions; also returns the processor's ``max_length``."""
    from skyeye.processing.processor import (
        SkyEyeProcessor,  # lazy: only --model needs the model stack
    )

    proc = SkyEyeProcessor.from_pretrained(model)

    def count(rec: dict) -> int:
        msgs = [{"role": t["role"], "content": t["text"]} for t in rec["turns"]]
        text = proc.expand_image_tokens(proc.apply_chat_template(msgs))
        return len(proc.tokenizer(text, add_special_tokens=False)["input_ids"])

    return count, proc.max_length


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m instruct_data.validate", description=__doc__)
    ap.add_argument("file", type=Path)
    ap.add_argument(
        "--root", type=Path, help="folder relative image paths resolve against (default: cwd)"
    )
    ap.add_argument("--model", help="model folder/hub id whose processor counts tokens")
    ap.add_argument("--max-tokens", type=int, help="context length (default: the tokenizer's)")
    ap.add_argument(
        "--no-band-check", action="store_true", help="skip opening images to count bands"
    )
    ap.add_argument("--json", type=Path, help="write the report as JSON here")
    ap.add_argument(
        "--allow-absolute-paths",
        action="store_true",
        help="accept absolute image paths (default: refused, as are paths leaving --root)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.file.is_file():
        print(f"error: {args.file} is not a file", file=sys.stderr)
        return 2
    counter, limit = (None, None)
    if args.model:
        counter, limit = processor_token_counter(args.model)
    try:
        rep = validate_file(
            args.file,
            args.root,
            not args.no_band_check,
            counter,
            args.max_tokens or limit,
            allow_absolute=args.allow_absolute_paths,
        )
        print(rep.table())
        if args.json:
            write_text(args.json, json.dumps(rep.as_dict(), indent=2) + "\n")
    except (DataFileError, DiskFullError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if rep.invalid == 0 and rep.lines else 1


if __name__ == "__main__":
    raise SystemExit(main())
