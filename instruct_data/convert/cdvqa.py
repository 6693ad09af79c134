"""CDVQA (Yuan et al., "Change Detection Meets Visual Question Answering", TGRS 2022): questions
about the change between two aerial images (built on SECOND).

Files per split, as published (``<Split>_questions.json`` / ``_answers.json`` / ``_images.json``)::

    {"questions": [{"id", "img_id", "type", "question", "answers_ids": [..], "active"}]}
    {"answers":   [{"id", "question_id", "answer", "active"}]}
    {"images":    [{"id", "file_name": "02180.png", "questions_ids": [..], "active"}]}

``--input`` is the questions file; the answers and images files are found beside it. Images
are ``im1/<file_name>`` (before) and ``im2/<file_name>`` (after) under ``--images`` (SECOND's
layout; ``A``/``B`` is tried too). Answers are written as sentences (``NVG_surface`` ->
"non-vegetated ground surface", ``30_to_40`` -> "30% to 40%"); the raw answer stays in
``meta.answer`` for exact-match scoring.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from instruct_data.convert.core import (
    MALFORMED,
    MISSING_IMAGE,
    ConvertContext,
    SkipRecord,
    iter_json_records,
)
from instruct_data.schema import IMAGE_TOKEN, Conversation, ImageRef, Turn
from skyeye.errors import DataFileError

NO_ANSWER = "no answer"
INACTIVE = "inactive question"
#: (before folder, after folder) layouts tried in order.
PAIR_FOLDERS = (("im1", "im2"), ("A", "B"))
CLASS_WORDS = {"NVG_surface": "non-vegetated ground surface", "low_vegetation": "low vegetation"}
LICENCE = {
    "licence": "CDVQA / SECOND dataset terms (research use; check before commercial use)",
    "commercial_use": False,
}


def answer_text(answer: str) -> str:
    """'yes' -> 'Yes.', '30_to_40' -> '30% to 40%.', 'NVG_surface' -> 'Non-vegetated ground surface.'"""
    a = answer.strip()
    if "_to_" in a and all(p.isdigit() for p in a.split("_to_")):
        low, high = a.split("_to_")
        text = f"{low}% to {high}%"
    elif a.isdigit():
        text = f"{a}%"
    else:
        text = CLASS_WORDS.get(a, a.replace("_", " "))
    return text[:1].upper() + text[1:] + "."


def _by_id(path: Path, key: str, ctx: ConvertContext) -> dict[int, dict]:
    if not path.is_file():
        raise DataFileError(
            f"{path}: missing: CDVQA needs the {key} file beside the questions file"
        )
    out = {}
    for rec in iter_json_records(path, ctx):
        if isinstance(rec, dict) and isinstance(rec.get("id"), int):
            out[rec["id"]] = rec
    return out


class CDVQAConverter:
    """``--input Train_questions.json --images SECOND_ROOT``."""

    name = "cdvqa"

    def __init__(self) -> None:
        self.answers: dict[int, dict] = {}
        self.images: dict[int, dict] = {}

    def records(self, input_path: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]:
        stem = input_path.name.replace("_questions.json", "")
        self.answers = _by_id(input_path.with_name(f"{stem}_answers.json"), "answers", ctx)
        self.images = _by_id(input_path.with_name(f"{stem}_images.json"), "images", ctx)
        for i, raw in enumerate(iter_json_records(input_path, ctx)):
            yield f"{stem}:{raw.get('id', i) if isinstance(raw, dict) else i}", raw

    def _pair(self, file_name: str, ctx: ConvertContext) -> list[ImageRef]:
        for before, after in PAIR_FOLDERS:
            found = [ctx.resolve(f"{folder}/{file_name}") for folder in (before, after)]
            if None not in found:
                return [
                    ImageRef(path=ctx.image_path(p), modality="optical", time=t)  # type: ignore[arg-type]
                    for p, t in zip(found, ("pre", "post"), strict=True)
                ]
        raise SkipRecord(MISSING_IMAGE, f"{file_name} (looked in im1/im2 and A/B)")

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]:
        if not isinstance(raw, dict) or not isinstance(raw.get("question"), str):
            raise SkipRecord(MALFORMED, "no question text")
        if raw.get("active") is False:
            raise SkipRecord(INACTIVE, key)
        answer_ids = raw.get("answers_ids") or []
        answer = self.answers.get(answer_ids[0]) if answer_ids else None
        if answer is None or not isinstance(answer.get("answer"), str):
            raise SkipRecord(NO_ANSWER, key)
        image = self.images.get(raw.get("img_id"))  # type: ignore[arg-type]
        if image is None or not isinstance(image.get("file_name"), str):
            raise SkipRecord(MISSING_IMAGE, f"{key}: no image entry {raw.get('img_id')}")
        turns = [
            Turn("user", f"{IMAGE_TOKEN}\n{IMAGE_TOKEN}\n{raw['question'].strip()}"),
            Turn("assistant", answer_text(answer["answer"])),
        ]
        meta = {
            "answer": answer["answer"],
            "question_type": raw.get("type"),
            "image_file": image["file_name"],
            **LICENCE,
        }
        return [
            Conversation(
                id=f"{ctx.source}:{key}",
                source=ctx.source,
                task="change",
                images=self._pair(image["file_name"], ctx),
                turns=turns,
                meta=meta,
            )
        ]
