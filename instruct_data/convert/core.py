"""The conversion driver: stream raw records, convert, skip bad ones counted by reason, write JSONL."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from instruct_data.boxes import BoxParseError, canonical_box_text, parse_boxes
from instruct_data.jsonstream import BAD_BYTES, BadRecord, iter_json_file
from instruct_data.schema import (
    IMAGE_TOKEN,
    Conversation,
    ImageRef,
    Turn,
    dumps_record,
    validate_record,
)
from skyeye.atomic import atomic_open
from skyeye.errors import DataFileError, DiskFullError, SkipRecord, UnsafePathError

logger = logging.getLogger(__name__)

# Skip reasons the converters use (a converter may add its own, e.g. "placeholder image").
MISSING_IMAGE = "missing image"
BAD_BOX = "unparseable box"
SEG_MISMATCH = "mask/[SEG] count mismatch"
EMPTY_TURN = "empty turn"
BAD_ORDER = "bad turn order"
IMAGE_TOKENS = "<image> count mismatch"
MALFORMED = "malformed record"
UNKNOWN_SHAPE = "unknown record shape"
INVALID_OUTPUT = "invalid output"
UNSAFE_PATH = "image path outside the image root"
FAILED = "conversion failed"


@dataclass
class ConvertContext:
    """What a converter needs besides the record: where images live, where output goes."""

    images_root: Path
    out_path: Path
    source: str
    shapes: Counter = field(default_factory=Counter)  # input shapes detected, for the report
    allow_absolute: bool = False  # record paths may be absolute (--allow-absolute-paths)

    def image_path(self, p: Path) -> str:
        """The path written into records: ``p`` as found under the root the user gave (POSIX)."""
        return p.as_posix()

    def resolve(self, rel: str) -> Path | None:
        """``rel`` under the image root (`instruct_data.images.resolve`): None when missing;
        `UnsafePathError` when it leaves the root."""
        from instruct_data.images import resolve

        return resolve(self.images_root, rel, self.allow_absolute)


class Converter(Protocol):
    """A source format: ``records`` streams (key, raw record); ``convert`` makes conversations."""

    name: str

    def records(self, input_path: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]: ...

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]: ...


def iter_json_records(path: Path, ctx: ConvertContext | None = None) -> Iterator[Any]:
    """Stream the records of a JSON list, a JSON object holding one list, or JSON Lines.

    A record that cannot be decoded (non-UTF-8 bytes, broken JSON) comes out as a `SkipRecord`
    and reading goes on (`instruct_data.jsonstream`); a list that breaks off raises
    `DataFileError` naming the file and byte offset. The detected shape is counted in
    ``ctx.shapes`` (e.g. ``"json-list"``, ``"json-object:annotations"``, ``"jsonl"``).
    """
    shape, records = iter_json_file(path)
    if ctx is not None:
        ctx.shapes[f"{path.name}: {shape}"] += 1
    for rec in records:
        if isinstance(rec, BadRecord):
            yield SkipRecord(BAD_BYTES if rec.reason == BAD_BYTES else MALFORMED, rec.detail)
        else:
            yield rec


def build_turns(messages: list[tuple[str, Any]], n_images: int) -> list[Turn]:
    """(role, text) pairs -> validated-shape turns with boxes parsed.

    Adds ``<image>`` placeholders to the first user turn when the text has none.
    Raises SkipRecord for empty turns, wrong role order, bad boxes or too many ``<image>``.
    """
    turns: list[Turn] = []
    for j, (role, text) in enumerate(messages):
        if not isinstance(text, str) or not text.replace(IMAGE_TOKEN, "").strip():
            raise SkipRecord(EMPTY_TURN, f"turn {j}")
        if role != ("user", "assistant")[j % 2]:
            raise SkipRecord(BAD_ORDER, f"turn {j} is {role!r}")
        text = canonical_box_text(text.strip())
        try:
            boxes = parse_boxes(text)
        except BoxParseError as e:
            raise SkipRecord(BAD_BOX, str(e)) from e
        turns.append(Turn(role=role, text=text, boxes=boxes))
    if not turns or len(turns) % 2:
        raise SkipRecord(BAD_ORDER, "a conversation needs user/assistant pairs")
    n_tok = sum(t.text.count(IMAGE_TOKEN) for t in turns)
    if n_tok == 0 and n_images:
        turns[0].text = "\n".join([IMAGE_TOKEN] * n_images) + "\n" + turns[0].text
    elif n_tok != n_images:
        raise SkipRecord(IMAGE_TOKENS, f"{n_tok} placeholders for {n_images} images")
    return turns


def require_image(ctx: ConvertContext, rel: Any, **kw: Any) -> ImageRef:
    """An ImageRef for ``rel`` under the image root, or SkipRecord(missing image)."""
    if not isinstance(rel, str) or not rel:
        raise SkipRecord(MISSING_IMAGE, "no image path in record")
    p = ctx.resolve(rel)
    if p is None:
        raise SkipRecord(MISSING_IMAGE, rel)
    return ImageRef(path=ctx.image_path(p), **kw)


@dataclass
class ConvertReport:
    """Counts of one conversion run."""

    source: str
    read: int = 0  # raw records read (each bad one included)
    converted: int = 0  # records that gave conversations: converted + sum(skipped) == read
    written: int = 0  # conversations written (a record may give several)
    skipped: Counter = field(default_factory=Counter)
    shapes: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "read": self.read,
            "converted": self.converted,
            "written": self.written,
            "skipped": dict(sorted(self.skipped.items())),
            "shapes": dict(sorted(self.shapes.items())),
            "seconds": round(self.seconds, 3),
        }

    def table(self) -> str:
        rows = [
            ("records read", self.read),
            ("records converted", self.converted),
            ("conversations written", self.written),
        ]
        rows += [(f"skipped: {r}", n) for r, n in sorted(self.skipped.items())]
        rows += [(f"input shape: {s}", n) for s, n in sorted(self.shapes.items())]
        w = max(len(r[0]) for r in rows)
        lines = [f"{self.source} conversion summary", "-" * (w + 10)]
        lines += [f"{name:<{w}}  {n:>8}" for name, n in rows]
        return "\n".join(lines)


def run_conversion(
    converter: Converter,
    input_path: Path,
    images_root: Path,
    out_path: Path,
    max_logged: int = 10,
    allow_absolute: bool = False,
) -> ConvertReport:
    """Convert ``input_path`` to unified JSONL at ``out_path``; bad records are skipped and counted.

    ``out_path`` is written under a temporary name and renamed when complete (`skyeye.atomic`).
    Raises `DataFileError` when the input cannot be read (at all, or past a byte offset): then
    nothing is written and an existing ``out_path`` stays; `DiskFullError` for a full disk.
    """
    ctx = ConvertContext(
        images_root=images_root,
        out_path=out_path,
        source=converter.name,
        allow_absolute=allow_absolute,
    )
    report = ConvertReport(source=converter.name)
    t0 = time.perf_counter()
    with atomic_open(out_path, "w") as out:
        _convert_all(converter, input_path, ctx, report, out, max_logged)
    report.shapes = ctx.shapes
    report.seconds = time.perf_counter() - t0
    return report


def _convert_one(converter: Converter, raw: Any, key: str, ctx: ConvertContext) -> list[str]:
    """JSON lines for one raw record; raises SkipRecord (or a malformed-data error)."""
    if isinstance(raw, SkipRecord):
        raise raw
    if isinstance(raw, tuple):  # (kind, record) of converters that tag their records
        for part in raw:
            if isinstance(part, SkipRecord):
                raise part
    lines = []
    for c in converter.convert(raw, key, ctx):
        d = c.to_dict()
        problems = validate_record(d)
        if problems:
            raise SkipRecord(INVALID_OUTPUT, "; ".join(problems[:3]))
        lines.append(dumps_record(d))
    return lines


def _convert_all(
    converter: Converter,
    input_path: Path,
    ctx: ConvertContext,
    report: ConvertReport,
    out: Any,
    max_logged: int,
) -> None:
    logged = 0
    for key, raw in tqdm(
        converter.records(input_path, ctx), desc=converter.name, unit="rec", leave=False
    ):
        report.read += 1
        try:
            lines = _convert_one(converter, raw, key, ctx)
        except SkipRecord as e:
            reason, why = e.reason, str(e)
        except (DataFileError, DiskFullError):
            raise
        except UnsafePathError as e:
            reason, why = UNSAFE_PATH, str(e)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            reason, why = MALFORMED, f"malformed ({type(e).__name__}: {e})"
        except Exception as e:  # noqa: BLE001 - one record's failure never ends the run
            reason, why = FAILED, f"{type(e).__name__}: {e}"
        else:
            for line in lines:
                out.write(line + "\n")
            report.written += len(lines)
            report.converted += 1
            continue
        report.skipped[reason] += 1
        if logged < max_logged:
            logger.warning("skip %s: %s", key, why)
            logged += 1
