"""airbus-aircraft: counting, listing with boxes, "the largest aircraft", instance masks.

The 2560 px Pléiades extracts (~0.5 m) are cut into ``tile`` px tiles (default 640: an aircraft
of ~90 px stays ~18 px when the tower reads the tile at 128 px), written losslessly as PNG under
``OUT/images/airbus-aircraft/``. An aircraft belongs to a tile when at least half of its box
lies in it (its box is clipped to the tile). Per tile:
- count: "How many aircraft are in this image?" -> ``<p>aircraft</p> [SEG] There are N
  aircraft.`` with the mask of every aircraft (looks first, as the chat counts on the mask);
- listing (tiles with aircraft): ``<p>aircraft</p> {box}{box}...``, one box per aircraft;
- referring (tiles with two or more): "the largest aircraft" -> its box;
- segmentation: ``<p>aircraft</p> [SEG]`` with the instance masks (the box polygons filled:
  the labels are boxes, so the masks are rectangles).
"""

from __future__ import annotations

import ast
import csv
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from instruct_data.boxes import format_box
from instruct_data.objects import licence_meta
from instruct_data.schema import Box, Conversation, ImageRef, Mask, Turn

__all__ = ["aircraft_boxes", "aircraft_records"]

DATASET = "airbus-aircraft"
COUNT_PROMPTS = (
    "How many aircraft are in this image?",
    "How many airplanes can you see?",
    "Count the aircraft in this image.",
)
LIST_PROMPT = "[detection] Detect every aircraft in this image with a box."
REFER_PROMPT = "[refer] Where is the largest aircraft?"
SEG_PROMPT = "Segment all aircraft in this image."


def aircraft_boxes(csv_path: Path, skipped: dict[str, int]) -> dict[str, list[tuple[int, ...]]]:
    """image id -> pixel boxes (x1, y1, x2, y2) from the CSV's closed polygons."""
    out: dict[str, list[tuple[int, ...]]] = defaultdict(list)
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                points = ast.literal_eval(row["geometry"])
                xs, ys = [int(p[0]) for p in points], [int(p[1]) for p in points]
            except (ValueError, SyntaxError, KeyError, TypeError, IndexError):
                skipped["unreadable box polygon"] = skipped.get("unreadable box polygon", 0) + 1
                continue
            name = row.get("image_id", "")
            if "/" in name or "\\" in name or name.startswith("."):
                reason = "image id outside the folder"
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            out[name].append((min(xs), min(ys), max(xs), max(ys)))
    return dict(out)


def _in_tile(box: tuple[int, ...], x0: int, y0: int, size: int) -> tuple[int, ...] | None:
    x1, y1, x2, y2 = box
    cx1, cy1 = max(x1, x0), max(y1, y0)
    cx2, cy2 = min(x2, x0 + size), min(y2, y0 + size)
    if cx2 <= cx1 or cy2 <= cy1:
        return None
    if (cx2 - cx1) * (cy2 - cy1) < 0.5 * (x2 - x1) * (y2 - y1):
        return None
    return (cx1 - x0, cy1 - y0, cx2 - x0, cy2 - y0)


def _rle(boxes: list[tuple[int, ...]], size: int) -> dict:
    from pycocotools import mask as mask_utils

    mask = np.zeros((size, size), np.uint8)
    for x1, y1, x2, y2 in boxes:
        mask[y1:y2, x1:x2] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [size, size], "counts": rle["counts"].decode("ascii")}


def _xyxy(b: tuple[int, ...], size: int) -> tuple[float, float, float, float]:
    return (b[0] / size, b[1] / size, b[2] / size, b[3] / size)


def aircraft_records(
    root: Path, out: Path, tile: int = 640, skipped: dict[str, int] | None = None
) -> Iterator[Conversation]:
    """Tiles of ``root/airbus-aircraft`` written under ``out/images``; their records."""
    from PIL import Image

    skipped = skipped if skipped is not None else {}
    base = root / DATASET
    boxes = aircraft_boxes(base / "annotations_subset.csv", skipped)
    tiles_dir = out / "images" / DATASET
    tiles_dir.mkdir(parents=True, exist_ok=True)
    meta0 = licence_meta(DATASET)
    for name in sorted(boxes):
        path = base / "images" / name
        if not path.is_file():
            skipped["missing image"] = skipped.get("missing image", 0) + 1
            continue
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        width, height = rgb.size
        for y0 in range(0, height - tile + 1, tile):
            for x0 in range(0, width - tile + 1, tile):
                inside = [b for b in (_in_tile(b, x0, y0, tile) for b in boxes[name]) if b]
                stem = f"{Path(name).stem}_{y0 // tile}_{x0 // tile}"
                rel = f"images/{DATASET}/{stem}.png"
                target = out / rel
                if not target.exists():
                    tmp = target.with_suffix(".tmp.png")
                    rgb.crop((x0, y0, x0 + tile, y0 + tile)).save(tmp)
                    tmp.replace(target)
                image = ImageRef(path=rel, modality="optical", size=[tile, tile])
                meta = {**meta0, "image_id": name, "tile": [y0, x0, tile], "count": len(inside)}
                yield from _tile_records(stem, image, inside, tile, meta)


def _tile_records(
    stem: str, image: ImageRef, inside: list[tuple[int, ...]], tile: int, meta: dict
) -> Iterator[Conversation]:
    n = len(inside)
    mask = Mask(seg_index=0, rle=_rle(inside, tile))
    prompt = COUNT_PROMPTS[sum(map(ord, stem)) % len(COUNT_PROMPTS)]  # stable across runs
    words = f"There {'is' if n == 1 else 'are'} {n} aircraft."
    yield _conv(
        f"{stem}:count",
        "vqa",
        image,
        prompt,
        f"<p>aircraft</p> [SEG] {words}",
        meta,
        "count",
        masks=[mask],
    )
    yield _conv(
        f"{stem}:seg",
        "segmentation",
        image,
        SEG_PROMPT,
        "<p>aircraft</p> [SEG]",
        meta,
        "segmentation",
        masks=[mask],
    )
    if not inside:
        return
    texts = [format_box(_xyxy(b, tile)) for b in inside]
    listed = [Box(xyxy=_xyxy(b, tile), text=t) for b, t in zip(inside, texts, strict=True)]
    yield _conv(
        f"{stem}:list",
        "detection",
        image,
        LIST_PROMPT,
        "<p>aircraft</p> " + "".join(texts),
        {**meta, "boxes_pixels": inside},
        "list",
        boxes=listed,
    )
    if n >= 2:
        largest = max(inside, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        text = format_box(_xyxy(largest, tile))
        box = Box(xyxy=_xyxy(largest, tile), text=text)
        yield _conv(
            f"{stem}:refer",
            "refer",
            image,
            REFER_PROMPT,
            f"<p>the largest aircraft</p> {text}",
            {**meta, "box_pixels": largest},
            "refer",
            boxes=[box],
        )


def _conv(
    ident: str, task: str, image: ImageRef, prompt: str, answer: str, meta: dict, gen_task: str,
    boxes: list[Box] | None = None, masks: list[Mask] | None = None,
) -> Conversation:  # fmt: skip
    return Conversation(
        id=f"{DATASET}:{ident}",
        source=DATASET,
        task=task,
        images=[image],
        turns=[
            Turn("user", f"<image>\n{prompt}"),
            Turn("assistant", answer, boxes=boxes or [], masks=masks or []),
        ],
        meta={**meta, "gen_task": gen_task},
    )
