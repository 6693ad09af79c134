"""Small unified-format records for the evaluation tests, written into a temporary folder."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from skyeye.chat.session import ChatReply, ChatSession, GenerationSettings
from skyeye.grounding.parse import parse_boxes

SIZE = 8  # every test image is SIZE x SIZE RGB


class ScriptedSession(ChatSession):
    """A real ChatSession (images, history, prompts) whose answers come from a script.

    Each answer is text, or (text, mask_fn) where mask_fn(session) gives the masks; the prompt
    and the messages seen at each question are recorded.
    """

    def __init__(self, model, processor, answers, settings=None):
        super().__init__(model, processor, settings or GenerationSettings())
        self.answers = deque(answers)
        self.seen: list[tuple[str, list[dict]]] = []

    def ask(self, prompt: str) -> ChatReply:
        self.seen.append((prompt, self.history))
        answer = self.answers.popleft()
        text, mask_fn = answer if isinstance(answer, tuple) else (answer, None)
        return ChatReply(text=text, boxes=parse_boxes(text), masks=mask_fn(self) if mask_fn else [])


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def block(rows: slice, cols: slice, size: int = SIZE) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[rows, cols] = True
    return m


def write_image(folder: Path, name: str, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(SIZE, SIZE, 3), dtype=np.uint8)
    path = folder / name
    Image.fromarray(arr).save(path)
    return name


def record(rid: str, task: str, question: str, answer: str, *, images=("a.png",), **extra) -> dict:
    rec = {
        "schema_version": "1.0",
        "id": rid,
        "source": "test",
        "task": task,
        "images": [{"path": p, "modality": "optical"} for p in images],
        "turns": [
            {"role": "user", "text": "<image>\n" * len(images) + question},
            {"role": "assistant", "text": answer},
        ],
    }
    answer_extra = {k: extra.pop(k) for k in ("boxes", "masks") if k in extra}
    rec["turns"][-1].update(answer_extra)
    rec.update(extra)
    return rec


def box(x1: float, y1: float, x2: float, y2: float, angle: float | None = None) -> dict:
    out = {"xyxy": [x1, y1, x2, y2], "text": "{}"}
    if angle is not None:
        out["angle"] = angle
    return out


def good_records() -> list[dict]:
    """Two or three usable records per evaluation task (one image, 8x8)."""
    m1 = block(slice(0, 4), slice(0, 4))
    m2 = block(slice(6, 8), slice(6, 8))
    return [
        record("cap1", "caption", "Describe this image.", "A river crosses green fields."),
        record("cap2", "caption", "Describe this image.", "A small town near a lake."),
        record("vqa1", "vqa", "Is there water?", "Yes."),
        record("vqa2", "vqa", "How many lakes?", "two"),
        record(
            "mcq1",
            "mcq",
            "What covers most of it?\nA. water\nB. forest\n"
            "Answer with the option's letter from the given choices directly.",
            "B",
            meta={"candidates": ["water", "forest"], "answer": "B"},
        ),
        record(
            "mcq2",
            "mcq",
            "Is there a river?",
            "A",
            meta={"candidates": ["yes", "no", "maybe"], "answer": "A"},
        ),
        record(
            "g1",
            "refer",
            "[refer] where is <p>the lake</p>?",
            "{<0><0><50><50>}",
            boxes=[box(0.0, 0.0, 0.5, 0.5)],
        ),
        record(
            "g2",
            "grounding",
            "[grounding] where is <p>the road</p>?",
            "{<0><0><50><50>}",
            boxes=[box(0.0, 0.0, 0.5, 0.5)],
        ),
        record(
            "g3",
            "refer",
            "[refer] where is <p>the pond</p>?",
            "{<10><10><60><40>|<30>}",
            boxes=[box(0.1, 0.1, 0.6, 0.4, angle=30.0)],
        ),
        record(
            "s1",
            "segmentation",
            "Segment <p>the lake</p>.",
            "<p>the lake</p> [SEG]",
            masks=[{"seg_index": 0, "image_index": 0, "rle": rle(m1)}],
        ),
        record(
            "s2",
            "segmentation",
            "Segment <p>the lake</p> and <p>the pond</p>.",
            "<p>the lake</p> [SEG] and <p>the pond</p> [SEG]",
            masks=[
                {"seg_index": 1, "image_index": 0, "rle": rle(m2)},
                {"seg_index": 0, "image_index": 0, "rle": rle(m1)},
            ],
        ),
    ]


def bad_lines() -> list[str]:
    """Lines the evaluator must skip and report, one per reason."""
    bad = [
        record("missing-img", "vqa", "Is there water?", "yes", images=("nope.png",)),
        record("mcq-bad", "mcq", "Pick one", "E", meta={"candidates": ["a", "b"], "answer": "E"}),
        record("g-nobox", "grounding", "where?", "somewhere"),
        record("s-nomask", "segmentation", "segment", "nothing here"),
    ]
    order = record("order", "vqa", "q", "a")
    order["turns"] = order["turns"][:1]
    return ["{not json", *(json.dumps(r) for r in bad), json.dumps(order)]


def write_data(folder: Path, *, with_bad: bool = True) -> Path:
    """``data.jsonl`` + ``a.png`` in ``folder``; returns the JSONL path."""
    write_image(folder, "a.png")
    lines = [json.dumps(r) for r in good_records()]
    if with_bad:
        lines = lines[:3] + bad_lines() + lines[3:]
    path = folder / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
