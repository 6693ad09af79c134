"""The conversion driver: stream raw records, convert, skip bad ones counted by reason, write JSONL."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import ijson
from tqdm import tqdm

from instruct_data.boxes import BoxParseError, canonical_box_text, parse_boxes
from instruct_data.schema import (
    IMAGE_TOKEN,
    Conversation,
    ImageRef,
    Turn,
    dumps_record,
    validate_record,
)

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
UNREADABLE = "unreadable input (broken JSON)"


class SkipRecord(Exception):
    """Raised by a converter for a record it cannot turn into a valid conversation."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class ConvertContext:
    """What a converter needs besides the record: where images live, where output goes."""

    images_root: Path
    out_path: Path
    source: str
    shapes: Counter = field(default_factory=Counter)  # input shapes detected, for the report

    def image_path(self, p: Path) -> str:
        """The path written into records: ``p`` as found under the root the user gave (POSIX)."""
        return p.as_posix()


class Converter(Protocol):
    """A source format: ``records`` streams (key, raw record); ``convert`` makes conversations."""

    name: str

    def records(self, input_path: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]: ...

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]: ...


def iter_json_records(path: Path, ctx: ConvertContext | None = None) -> Iterator[Any]:
    """Stream the records of a JSON list, a JSON object holding one list, or JSON Lines.

    Uses ijson so a 300 MB file is never loaded whole. The detected shape is counted in
    ``ctx.shapes`` (e.g. ``"json-list"``, ``"json-object:annotations"``, ``"jsonl"``).
    """
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    first = head[:1]
    if first == b"[":
        shape, prefix = "json-list", "item"
    elif first == b"{":
        with open(path, "rb") as f:
            line = f.readline()
            rest = f.read(64).strip()
        try:
            json.loads(line)
            is_jsonl = rest[:1] == b"{"  # a second object line: JSON Lines
        except json.JSONDecodeError:
            is_jsonl = False
        if is_jsonl:
            if ctx is not None:
                ctx.shapes[f"{path.name}: jsonl"] += 1
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError:
                            yield SkipRecord(MALFORMED, f"line {n} is not JSON")
            return
        prefix = _first_list_key(path)
        if prefix is None:
            raise ValueError(f"{path}: a JSON object without any list of records inside")
        shape = f"json-object:{prefix}"
        prefix = f"{prefix}.item"
    else:
        raise ValueError(
            f"{path}: not JSON (starts with {head[:20]!r}); expected a list, an object or JSON Lines"
        )
    if ctx is not None:
        ctx.shapes[f"{path.name}: {shape}"] += 1
    with open(path, "rb") as f:
        yield from ijson.items(f, prefix, use_float=True)


def _first_list_key(path: Path) -> str | None:
    """The first top-level key of a JSON object whose value is a list (streamed)."""
    with open(path, "rb") as f:
        for prefix, event, _ in ijson.parse(f):
            if event == "start_array" and prefix and "." not in prefix:
                return prefix
    return None


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
    from instruct_data.images import resolve

    if not isinstance(rel, str) or not rel:
        raise SkipRecord(MISSING_IMAGE, "no image path in record")
    p = resolve(ctx.images_root, rel)
    if p is None:
        raise SkipRecord(MISSING_IMAGE, rel)
    return ImageRef(path=ctx.image_path(p), **kw)


@dataclass
class ConvertReport:
    """Counts of one conversion run."""

    source: str
    read: int = 0
    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    shapes: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "read": self.read,
            "written": self.written,
            "skipped": dict(sorted(self.skipped.items())),
            "shapes": dict(sorted(self.shapes.items())),
            "seconds": round(self.seconds, 3),
        }

    def table(self) -> str:
        rows = [("records read", self.read), ("conversations written", self.written)]
        rows += [(f"skipped: {r}", n) for r, n in sorted(self.skipped.items())]
        rows += [(f"input shape: {s}", n) for s, n in sorted(self.shapes.items())]
        w = max(len(r[0]) for r in rows)
        lines = [f"{self.source} conversion summary", "-" * (w + 10)]
        lines += [f"{name:<{w}}  {n:>8}" for name, n in rows]
        return "\n".join(lines)


def run_conversion(
    converter: Converter, input_path: Path, images_root: Path, out_path: Path, max_logged: int = 10
) -> ConvertReport:
    """Convert ``input_path`` to unified JSONL at ``out_path``; bad records are skipped and counted."""
    ctx = ConvertContext(images_root=images_root, out_path=out_path, source=converter.name)
    report = ConvertReport(source=converter.name)
    t0 = time.perf_counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as out:
        try:
            _convert_all(converter, input_path, ctx, report, out, max_logged)
        except ijson.JSONError as e:
            # The stream itself is broken (e.g. a truncated file): keep what was converted.
            report.skipped[UNREADABLE] += 1
            logger.error(
                "%s: input JSON is broken after %d records (%s)", input_path, report.read, e
            )
    report.shapes = ctx.shapes
    report.seconds = time.perf_counter() - t0
    return report


def _convert_one(converter: Converter, raw: Any, key: str, ctx: ConvertContext) -> list[str]:
    """JSON lines for one raw record; raises SkipRecord (or a malformed-data error)."""
    if isinstance(raw, SkipRecord):
        raise raw
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
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            reason, why = MALFORMED, f"malformed ({type(e).__name__}: {e})"
        else:
            for line in lines:
                out.write(line + "\n")
            report.written += len(lines)
            continue
        report.skipped[reason] += 1
        if logged < max_logged:
            logger.warning("skip %s: %s", key, why)
            logged += 1
