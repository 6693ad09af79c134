"""Evaluation samples read from unified instruction JSONL (docs/instruction_format.md).

The library must not import ``instruct_data``, so this module reads the format itself: plain
``json`` per line and ``pycocotools`` for the COCO RLE masks. One record gives one sample:

* the **last assistant turn is the reference** (its text, its ``boxes``, its ``masks``);
* the **last user turn is the question**; the turns before it are replayed as text history
  (teacher forcing: the reference answers of earlier turns, not the model's);
* ``<image>`` placeholders are removed from every turn: all of the record's images are attached
  with ``ChatSession.add_image`` and precede the question (``ChatSession`` writes them at the
  start of the next user turn), so images come before the evaluated question even when the
  record placed them in an earlier turn.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skyeye.constants import IMAGE_TOKEN, MCQ_LETTERS
from skyeye.errors import ImagePathError, RecordError, UnsafePathError
from skyeye.grounding.parse import GroundedBox
from skyeye.io.paths import resolve_image
from skyeye.io.rle import decode_rle as _decode_rle
from skyeye.io.rle import encode_mask  # noqa: F401  (re-exported for the scorers)

logger = logging.getLogger(__name__)

EVAL_TASKS = ("caption", "vqa", "mcq", "grounding", "refseg")

# Which record `task` labels each evaluation reads by default (others are passed over).
DEFAULT_RECORD_TASKS: dict[str, frozenset[str]] = {
    "caption": frozenset({"caption"}),
    "vqa": frozenset({"vqa"}),
    "mcq": frozenset({"mcq"}),
    "grounding": frozenset({"grounding", "refer", "detection"}),
    "refseg": frozenset({"segmentation", "reasoning", "change"}),
}

MCQ_INSTRUCTION = "Answer with the option's letter from the given choices directly."
DEFAULT_TEMPLATE = "{question}"
DEFAULT_MCQ_TEMPLATE = "{question}\n{options}\n" + MCQ_INSTRUCTION
_OPTION_LINE = re.compile(r"^\s*\(?([A-D])[.):]\s*(.*?)\s*$")


@dataclass
class EvalImage:
    """One image of a record. ``paths``: one file/folder, or band files stacked in order."""

    paths: list[str]
    band_names: list[str] | None = None
    wavelengths: list[float | None] | None = None
    modality: str | None = None

    @property
    def source(self) -> str | list[str]:
        return self.paths[0] if len(self.paths) == 1 else self.paths


@dataclass
class ReferenceMask:
    """A reference mask: the ``seg_index``-th ``[SEG]`` of the answer, on image ``image_index``.

    Kept as RLE (decoded on demand) so that a large benchmark does not sit in memory as pixels.
    """

    seg_index: int
    image_index: int
    rle: dict[str, Any]
    shape: tuple[int, int]

    def decode(self) -> np.ndarray:
        """(H, W) bool."""
        return decode_rle(self.rle)


@dataclass
class EvalSample:
    """One record ready to ask: history turns, the question and what the answer should be."""

    id: str
    line: int
    record_task: str
    images: list[EvalImage]
    history: list[dict[str, str]]
    question: str
    reference: str
    ref_boxes: list[GroundedBox] = field(default_factory=list)
    ref_box_images: list[int] = field(default_factory=list)
    ref_masks: list[ReferenceMask] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    answer_letter: str | None = None


def strip_image_tokens(text: str) -> str:
    """The turn text without ``<image>`` placeholders (and the line breaks after them)."""
    return re.sub(re.escape(IMAGE_TOKEN) + r"[ \t]*\n?", "", text).strip()


def decode_rle(rle: Any) -> np.ndarray:
    """COCO RLE -> (H, W) bool; a bad RLE is a `RecordError` ("bad mask")."""
    try:
        return _decode_rle(rle)
    except ValueError as err:
        raise RecordError("bad mask", str(err)) from None


def build_prompt(question: str, template: str, candidates: Sequence[str] = ()) -> str:
    """Fill ``template``'s ``{question}`` (and ``{options}``) placeholders.

    With candidates (MCQ), option lines ``A. <candidate>`` already in the question, and the
    default instruction line, are removed first, so a converted benchmark question is rebuilt
    exactly and a bare question gains its options. ``{options}`` is "A. c0\\nB. c1...".
    Plain substitution: other braces in the template or question are kept as written.
    """
    if candidates:
        wanted = {
            letter: str(c).strip().lower()
            for letter, c in zip(MCQ_LETTERS, candidates, strict=False)
        }
        kept = []
        for line in question.splitlines():
            m = _OPTION_LINE.match(line)
            if m and wanted.get(m.group(1)) == m.group(2).lower():
                continue
            if line.strip() == MCQ_INSTRUCTION:
                continue
            kept.append(line)
        question = "\n".join(kept).strip()
    options = "\n".join(
        f"{letter}. {c}" for letter, c in zip(MCQ_LETTERS, candidates, strict=False)
    )
    return template.replace("{question}", question).replace("{options}", options)


def option_letters(question: str) -> tuple[str, ...]:
    """The option letters a multiple-choice question lists on lines of their own ("A. water"),
    in order; "Reply with A, B, C or D." lists none."""
    found = (_OPTION_LINE.match(line) for line in question.splitlines())
    return tuple(m.group(1) for m in found if m and m.group(2))


def check_template(template: str, task: str) -> None:
    """Raise ValueError when ``template`` lacks the placeholders ``task`` needs."""
    if "{question}" not in template:
        raise ValueError(f"the prompt template {template!r} has no {{question}} placeholder")
    if task == "mcq" and "{options}" not in template:
        raise ValueError(
            f"the MCQ prompt template {template!r} has no {{options}} placeholder; the options "
            "A-D must be in the prompt"
        )


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | RecordError]]:
    """Stream ``(line number, record or RecordError)``; blank lines are skipped."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield number, RecordError("malformed record", f"line {number}: non-UTF-8 bytes")
                continue
            except (json.JSONDecodeError, RecursionError) as err:
                msg = getattr(err, "msg", "nested too deeply")
                yield (
                    number,
                    RecordError("malformed record", f"line {number} is not JSON: {msg}"),
                )
                continue
            if not isinstance(record, dict):
                yield number, RecordError("malformed record", f"line {number} is not a JSON object")
                continue
            yield number, record


def record_id(record: dict[str, Any], line: int) -> str:
    rid = record.get("id")
    return str(rid) if isinstance(rid, (str, int)) and str(rid) else f"line:{line}"


def _images(record: dict[str, Any], root: Path, allow_absolute: bool = False) -> list[EvalImage]:
    out = []
    for k, img in enumerate(record.get("images") or []):
        if not isinstance(img, dict) or "path" not in img:
            raise RecordError("malformed record", f"image {k} has no 'path'")
        raw = img["path"] if isinstance(img["path"], list) else [img["path"]]
        if not raw or not all(isinstance(p, str) and p for p in raw):
            raise RecordError(
                "malformed record", f"image {k}: 'path' must be a string or a list of them"
            )
        try:
            resolved = resolve_image(raw, root, allow_absolute=allow_absolute)
            paths = [str(p) for p in (resolved if isinstance(resolved, list) else [resolved])]
        except UnsafePathError as err:
            raise RecordError("image path outside the image root", str(err)) from None
        except ImagePathError as err:
            raise RecordError("missing image", str(err)) from None
        names, waves = img.get("band_names"), img.get("wavelengths")
        if names is not None and waves is not None and len(names) != len(waves):
            raise RecordError(
                "malformed record", f"image {k}: {len(names)} band names, {len(waves)} wavelengths"
            )
        out.append(EvalImage(paths, names, waves, img.get("modality")))
    return out


def _turns(record: dict[str, Any]) -> list[dict[str, Any]]:
    turns = record.get("turns")
    if not isinstance(turns, list) or not turns:
        raise RecordError("malformed record", "'turns' must be a non-empty list")
    for i, turn in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if not isinstance(turn, dict) or turn.get("role") != expected:
            raise RecordError("bad turn order", f"turn {i} should be {expected}")
        if not isinstance(turn.get("text"), str) or not turn["text"].strip():
            raise RecordError("empty turn", f"turn {i} has no text")
    if len(turns) % 2:
        raise RecordError("bad turn order", "the last turn is not an assistant turn")
    return turns


def _ref_boxes(turn: dict[str, Any]) -> tuple[list[GroundedBox], list[int]]:
    boxes, images = [], []
    for k, b in enumerate(turn.get("boxes") or []):
        try:
            x1, y1, x2, y2 = (float(v) for v in b["xyxy"])
            angle = b.get("angle")
            angle = None if angle is None else float(angle)
            image_index = int(b.get("image_index") or 0)
        except (KeyError, TypeError, ValueError):
            raise RecordError(
                "unparseable box", f"reference box {k}: need 'xyxy' [x1, y1, x2, y2]"
            ) from None
        if not (0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1):
            raise RecordError(
                "unparseable box", f"reference box {k} {[x1, y1, x2, y2]} is not in 0..1"
            )
        boxes.append(GroundedBox(x1, y1, x2, y2, angle=angle))
        images.append(image_index)
    return boxes, images


def _ref_masks(turn: dict[str, Any], n_images: int) -> list[ReferenceMask]:
    masks = []
    for k, m in enumerate(turn.get("masks") or []):
        if not isinstance(m, dict):
            raise RecordError("bad mask", f"mask {k} is not an object")
        seg, image_index = m.get("seg_index", k), m.get("image_index", 0)
        if (
            not isinstance(seg, int)
            or not isinstance(image_index, int)
            or not 0 <= image_index < max(n_images, 1)
        ):
            raise RecordError("bad mask", f"mask {k}: bad seg_index/image_index")
        shape = decode_rle(m.get("rle")).shape  # validates the RLE now, not at scoring time
        masks.append(ReferenceMask(seg, image_index, m["rle"], (int(shape[0]), int(shape[1]))))
    masks.sort(key=lambda r: r.seg_index)
    if [r.seg_index for r in masks] != list(range(len(masks))):
        raise RecordError("mask/[SEG] count mismatch", "seg_index values must be 0..K-1")
    return masks


def parse_sample(
    record: dict[str, Any], line: int, root: Path, task: str, allow_absolute: bool = False
) -> EvalSample:
    """A record as an `EvalSample` for evaluation ``task``; raises `RecordError` when unusable.

    Image paths resolve under ``root`` (`skyeye.io.paths.resolve_image`: a file, a band folder
    or a list; absolute ones only with ``allow_absolute``)."""
    rid = record_id(record, line)
    turns = _turns(record)
    images = _images(record, root, allow_absolute)
    n_placeholders = sum(t["text"].count(IMAGE_TOKEN) for t in turns)
    if n_placeholders != len(images):
        raise RecordError(
            "malformed record", f"{n_placeholders} <image> placeholders for {len(images)} images"
        )
    history = [{"role": t["role"], "content": strip_image_tokens(t["text"])} for t in turns[:-2]]
    question, answer = strip_image_tokens(turns[-2]["text"]), turns[-1]
    if not question:
        raise RecordError("empty turn", "the question is only image placeholders")
    sample = EvalSample(
        rid, line, str(record.get("task")), images, history, question, answer["text"].strip()
    )
    if task == "grounding":
        sample.ref_boxes, sample.ref_box_images = _ref_boxes(answer)
        if not sample.ref_boxes:
            raise RecordError("missing annotation", "the reference answer has no boxes")
    elif task == "refseg":
        sample.ref_masks = _ref_masks(answer, len(images))
        if not sample.ref_masks:
            raise RecordError("missing annotation", "the reference answer has no masks")
    elif task == "mcq":
        meta = record["meta"] if isinstance(record.get("meta"), dict) else {}
        cands = meta.get("candidates")
        if not isinstance(cands, list) or not 2 <= len(cands) <= len(MCQ_LETTERS):
            raise RecordError("missing annotation", "meta.candidates must list 2 to 4 options")
        sample.candidates = [str(c) for c in cands]
        letter = str(meta.get("answer", sample.reference)).strip().upper()
        if letter not in MCQ_LETTERS[: len(cands)]:
            raise RecordError(
                "answer not in candidates", f"answer {letter!r} for {len(cands)} options"
            )
        sample.answer_letter = letter
    return sample
