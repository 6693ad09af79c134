"""The unified SkyEye conversation format (JSON Lines, one conversation per line), version 1.

See docs/instruction_format.md and instruct_data/schema/conversation-v1.json. A record::

    {"schema_version": "1.0", "id": "...", "source": "...", "task": "caption",
     "images": [{"path": "a.tif" | ["r.png", "b.png"], "modality": "multispectral",
                 "band_names": [...], "wavelengths": [...], "time": "pre", "size": [h, w]}],
     "turns": [{"role": "user", "text": "<image>\\n..."},
               {"role": "assistant", "text": "... {<1><2><30><40>} <p>lake</p> [SEG]",
                "boxes": [{"xyxy": [0.01, 0.02, 0.3, 0.4], "text": "{<1><2><30><40>}"}],
                "masks": [{"seg_index": 0, "image_index": 0, "rle": {"size": [h, w], "counts": "..."}}]}],
     "meta": {...}}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instruct_data.boxes import BOX_RE, Box, count_box_tokens
from skyeye.atomic import atomic_open
from skyeye.constants import IMAGE_TOKEN, SEG_TOKEN
from skyeye.io.sensors import list_sensors

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "1.0"
MODALITIES = ("optical", "multispectral", "sar")
TIMES = ("pre", "post")
ROLES = ("user", "assistant")
TASKS = (
    "caption",
    "vqa",
    "mcq",
    "refer",
    "grounding",
    "identify",
    "detection",
    "segmentation",
    "conversation",
    "change",
    "reasoning",
)


@dataclass
class Mask:
    """A COCO RLE mask answering the ``seg_index``-th ``[SEG]`` of its turn, on image ``image_index``."""

    seg_index: int
    rle: dict  # {"size": [h, w], "counts": str}
    image_index: int = 0

    def to_dict(self) -> dict:
        return {"seg_index": self.seg_index, "image_index": self.image_index, "rle": self.rle}

    @classmethod
    def from_dict(cls, d: dict) -> Mask:
        return cls(
            seg_index=int(d["seg_index"]), rle=d["rle"], image_index=int(d.get("image_index", 0))
        )


@dataclass
class Turn:
    """One message: ``role`` user/assistant, ``text`` with ``<image>``, boxes and ``[SEG]`` tokens."""

    role: str
    text: str
    boxes: list[Box] = field(default_factory=list)
    masks: list[Mask] = field(default_factory=list)

    def to_dict(self) -> dict:
        d: dict = {"role": self.role, "text": self.text}
        if self.boxes:
            d["boxes"] = [b.to_dict() for b in self.boxes]
        if self.masks:
            d["masks"] = [m.to_dict() for m in self.masks]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Turn:
        return cls(
            role=d["role"],
            text=d["text"],
            boxes=[Box.from_dict(b) for b in d.get("boxes", [])],
            masks=[Mask.from_dict(m) for m in d.get("masks", [])],
        )


#: The image entry's keys written only when set (`ImageRef`'s fields after path and modality).
_IMAGE_OPTIONAL = ("band_names", "wavelengths", "time", "size", "sensor")


@dataclass
class ImageRef:
    """An input image: one file, a band-per-file folder, or a list of files whose bands stack in order."""

    path: str | list[str]
    modality: str = "optical"
    band_names: list[str] | None = None
    wavelengths: list[float | None] | None = None  # µm; None for bands without one (SAR)
    time: str | None = None  # "pre" / "post" for bi-temporal pairs
    size: list[int] | None = None  # [height, width] when known
    # A registered sensor (skyeye.io.sensors) whose value scaling the image is read with, where
    # band names alone would read it otherwise (8-bit aerial photos saved as R, G, B tiles).
    sensor: str | None = None

    def to_dict(self) -> dict:
        d: dict = {"path": self.path, "modality": self.modality}
        for k in _IMAGE_OPTIONAL:
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ImageRef:
        return cls(**{k: d[k] for k in ("path", "modality", *_IMAGE_OPTIONAL) if k in d})


@dataclass
class Conversation:
    """One training/evaluation conversation over zero or more images."""

    id: str
    source: str
    task: str
    images: list[ImageRef]
    turns: list[Turn]
    meta: dict[str, Any] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION

    def to_dict(self) -> dict:
        d: dict = {
            "schema_version": self.schema_version,
            "id": self.id,
            "source": self.source,
            "task": self.task,
            "images": [i.to_dict() for i in self.images],
            "turns": [t.to_dict() for t in self.turns],
        }
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Conversation:
        return cls(
            id=d["id"],
            source=d["source"],
            task=d["task"],
            images=[ImageRef.from_dict(i) for i in d["images"]],
            turns=[Turn.from_dict(t) for t in d["turns"]],
            meta=dict(d.get("meta", {})),
            schema_version=d.get("schema_version", SCHEMA_VERSION),
        )


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_image(i: int, im: Any, out: list[str]) -> None:
    p = f"images[{i}]"
    if not isinstance(im, dict):
        out.append(f"{p}: must be an object")
        return
    path = im.get("path")
    if isinstance(path, list):
        if not path or not all(isinstance(s, str) and s for s in path):
            out.append(f"{p}.path: a list of paths must hold non-empty strings")
    elif not (isinstance(path, str) and path):
        out.append(f"{p}.path: missing or not a string / list of strings")
    if im.get("modality") not in MODALITIES:
        out.append(f"{p}.modality: {im.get('modality')!r} not one of {MODALITIES}")
    names, wls = im.get("band_names"), im.get("wavelengths")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        out.append(f"{p}.band_names: must be a list of strings")
    if wls is not None:
        if not (
            isinstance(wls, list) and all(w is None or (_is_num(w) and 0 < w < 1e5) for w in wls)
        ):
            out.append(f"{p}.wavelengths: must be a list of positive numbers (µm) or nulls")
        elif isinstance(names, list) and len(names) != len(wls):
            out.append(f"{p}: {len(names)} band_names but {len(wls)} wavelengths")
    if im.get("time") not in (None, *TIMES):
        out.append(f"{p}.time: {im.get('time')!r} not one of {TIMES}")
    size = im.get("size")
    if size is not None and not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(s, int) and s > 0 for s in size)
    ):
        out.append(f"{p}.size: must be [height, width] positive integers")
    sensor = im.get("sensor")
    if sensor is not None and sensor not in list_sensors():
        out.append(f"{p}.sensor: {sensor!r} not one of {list_sensors()}")


def _check_rle(p: str, rle: Any, out: list[str]) -> None:
    if not isinstance(rle, dict):
        out.append(f"{p}.rle: must be an object with size and counts")
        return
    size = rle.get("size")
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(s, int) and s > 0 for s in size)
    ):
        out.append(f"{p}.rle.size: must be [height, width] positive integers")
    if not isinstance(rle.get("counts"), str):
        out.append(f"{p}.rle.counts: must be a compressed COCO RLE string")


def _check_turn(j: int, t: Any, n_images: int, out: list[str]) -> None:
    p = f"turns[{j}]"
    if not isinstance(t, dict):
        out.append(f"{p}: must be an object")
        return
    want = ROLES[j % 2]
    if t.get("role") != want:
        out.append(
            f"{p}.role: expected {want!r} (turns alternate user/assistant), got {t.get('role')!r}"
        )
    text = t.get("text")
    if not isinstance(text, str) or not text.strip():
        out.append(f"{p}.text: empty or not a string")
        text = ""
    boxes = t.get("boxes", [])
    if not isinstance(boxes, list):
        out.append(f"{p}.boxes: must be a list")
        boxes = []
    if len(boxes) != count_box_tokens(text):
        out.append(f"{p}: {count_box_tokens(text)} boxes in text but {len(boxes)} in boxes")
    for k, b in enumerate(boxes):
        bp = f"{p}.boxes[{k}]"
        xy = b.get("xyxy") if isinstance(b, dict) else None
        if not (
            isinstance(xy, list) and len(xy) == 4 and all(_is_num(v) and 0 <= v <= 1 for v in xy)
        ):
            out.append(f"{bp}.xyxy: must be 4 numbers in [0, 1]")
        elif xy[2] < xy[0] or xy[3] < xy[1]:
            out.append(f"{bp}.xyxy: x2 < x1 or y2 < y1")
        if not (
            isinstance(b, dict) and isinstance(b.get("text"), str) and BOX_RE.fullmatch(b["text"])
        ):
            out.append(f"{bp}.text: not a {{<x1><y1><x2><y2>}} box")
        if isinstance(b, dict) and b.get("angle") is not None and not _is_num(b["angle"]):
            out.append(f"{bp}.angle: must be a number or null")
        if isinstance(b, dict) and not (0 <= b.get("image_index", 0) < max(n_images, 1)):
            out.append(f"{bp}.image_index: out of range")
    masks = t.get("masks", [])
    if not isinstance(masks, list):
        out.append(f"{p}.masks: must be a list")
        masks = []
    n_seg = text.count(SEG_TOKEN)
    if t.get("role") == "assistant" and len(masks) != n_seg:
        out.append(f"{p}: {n_seg} [SEG] tokens but {len(masks)} masks")
    if t.get("role") == "user" and masks:
        out.append(f"{p}.masks: only assistant turns carry masks")
    seen = sorted(m.get("seg_index", -1) for m in masks if isinstance(m, dict))
    if masks and seen != list(range(len(masks))):
        out.append(f"{p}.masks: seg_index values must be 0..{len(masks) - 1}, got {seen}")
    for k, m in enumerate(masks):
        if not isinstance(m, dict):
            out.append(f"{p}.masks[{k}]: must be an object")
            continue
        if not (
            isinstance(m.get("image_index", 0), int) and 0 <= m.get("image_index", 0) < n_images
        ):
            out.append(f"{p}.masks[{k}].image_index: out of range for {n_images} images")
        _check_rle(f"{p}.masks[{k}]", m.get("rle"), out)


def validate_record(d: Any) -> list[str]:
    """Problems with one unified record (empty list: valid). Pure structure; no file access."""
    out: list[str] = []
    if not isinstance(d, dict):
        return ["record: must be a JSON object"]
    ver = d.get("schema_version")
    if not (isinstance(ver, str) and ver.split(".")[0] == SCHEMA_VERSION.split(".")[0]):
        out.append(f"schema_version: {ver!r} is not compatible with {SCHEMA_VERSION}")
    for k in ("id", "source"):
        if not (isinstance(d.get(k), str) and d[k]):
            out.append(f"{k}: missing or empty")
    if d.get("task") not in TASKS:
        out.append(f"task: {d.get('task')!r} not one of {TASKS}")
    images = d.get("images")
    if not isinstance(images, list):
        out.append("images: must be a list")
        images = []
    for i, im in enumerate(images):
        _check_image(i, im, out)
    turns = d.get("turns")
    if not (isinstance(turns, list) and turns):
        out.append("turns: must be a non-empty list")
        turns = []
    for j, t in enumerate(turns):
        _check_turn(j, t, len(images), out)
    if turns and len(turns) % 2:
        out.append("turns: must end with an assistant turn")
    n_img_tok = sum(
        t.get("text", "").count(IMAGE_TOKEN)
        for t in turns
        if isinstance(t, dict) and isinstance(t.get("text"), str)
    )
    if n_img_tok != len(images):
        out.append(f"images: {len(images)} images but {n_img_tok} {IMAGE_TOKEN} placeholders")
    if "meta" in d and not isinstance(d["meta"], dict):
        out.append("meta: must be an object")
    extra = set(d) - {"schema_version", "id", "source", "task", "images", "turns", "meta"}
    if extra:
        out.append(f"record: unknown keys {sorted(extra)} (put extras in meta)")
    return out


def load_jsonl(path: str | Path) -> Iterator[dict]:
    """Stream records from a JSON Lines file (blank lines skipped).

    Raises ValueError naming the file and line on invalid JSON.
    """
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}:{n}: invalid JSON ({e.msg}); fix or drop that line"
                ) from e


def dumps_record(rec: dict | Conversation) -> str:
    """One record as a single JSON line (UTF-8, compact, no trailing newline)."""
    d = rec.to_dict() if isinstance(rec, Conversation) else rec
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


def write_jsonl(path: str | Path, records: Iterable[dict | Conversation]) -> int:
    """Stream ``records`` to ``path`` (parents created); returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with atomic_open(path, "w") as f:
        for rec in records:
            f.write(dumps_record(rec) + "\n")
            n += 1
    return n
