"""SkyEyeGPT (SkyEye-968k): annotation JSONs under caption/, vqa/, vg/, phrasegrounding/,
multitask_conversation/. Record keys are not public, so the MiniGPT-v2 shapes are detected per
record: ``image_id + caption``, ``image_id + question + answer``, ``image_id + phrase + bbox``,
``id + conversations`` (LLaVA). Task tags are added to the user text when it has none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from instruct_data.boxes import BoxParseError, canonical_box_text, format_box, pixel_xywh_to_xyxy
from instruct_data.convert.core import (
    BAD_BOX,
    MALFORMED,
    UNKNOWN_SHAPE,
    ConvertContext,
    SkipRecord,
    build_turns,
    iter_json_records,
    require_image,
)
from instruct_data.convert.llava import convert_llava
from instruct_data.images import image_size
from instruct_data.schema import Conversation

FOLDER_TASKS = {
    "caption": "caption",
    "vqa": "vqa",
    "vg": "refer",
    "phrasegrounding": "grounding",
    "multitask_conversation": "conversation",
}
TAG = {"caption": "[caption]", "vqa": "[vqa]", "refer": "[refer]", "grounding": "[grounding]"}


def _with_tag(task: str, text: str) -> str:
    tag = TAG.get(task)
    return text if tag is None or text.lstrip().startswith("[") else f"{tag} {text}"


def _bbox_text(bbox: Any, image_file: Path) -> str:
    """``bbox`` as box text: a box string (``<delim>``-joined allowed), or pixel [x, y, w, h] list(s)."""
    if isinstance(bbox, str):
        return canonical_box_text(bbox.strip())
    if isinstance(bbox, list) and bbox and all(isinstance(v, (int, float)) for v in bbox):
        bbox = [bbox]
    if not (
        isinstance(bbox, list) and bbox and all(isinstance(b, list) and len(b) == 4 for b in bbox)
    ):
        raise SkipRecord(BAD_BOX, f"bbox {bbox!r} is neither box text nor [x, y, w, h] list(s)")
    hw = image_size(image_file)
    if hw is None:
        raise SkipRecord(BAD_BOX, f"cannot read the size of {image_file} to normalise a pixel bbox")
    try:
        return "".join(format_box(pixel_xywh_to_xyxy(b, hw[1], hw[0])) for b in bbox)
    except (BoxParseError, TypeError, ValueError) as e:
        raise SkipRecord(BAD_BOX, str(e)) from e


class SkyEyeGPTConverter:
    """A SkyEye-968k folder (or one of its JSON files)."""

    name = "skyeyegpt"

    def records(self, input_path: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]:
        files = sorted(input_path.rglob("*.json")) if input_path.is_dir() else [input_path]
        for f in files:
            rel = f.relative_to(input_path) if input_path.is_dir() else Path(f.name)
            folder = rel.parts[0] if len(rel.parts) > 1 else f.parent.name
            task = FOLDER_TASKS.get(folder)
            stem = rel.with_suffix("").as_posix()
            for i, raw in enumerate(iter_json_records(f, ctx)):
                yield f"{stem}:{i}", (task, raw)

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]:
        task, rec = raw
        if not isinstance(rec, dict):
            raise SkipRecord(MALFORMED, "record is not an object")
        if "conversations" in rec:
            c = convert_llava(rec, key, ctx, default_task=task or "conversation")
            c.id = f"{ctx.source}:{key}"
            return [c]
        img_rel = rec.get("image", rec.get("image_id"))
        if isinstance(img_rel, int):
            img_rel = str(img_rel)
        image = require_image(ctx, img_rel)
        if "caption" in rec:
            task = task or "caption"
            caps = rec["caption"] if isinstance(rec["caption"], list) else [rec["caption"]]
            prompt = (
                "Describe this image in detail."
                if task != "grounding"
                else "Describe this image in detail, with the location of each object."
            )
            qa = [(_with_tag(task, prompt), c) for c in caps]
        elif "question" in rec and "answer" in rec:
            task = task or "vqa"
            ans = (
                rec["answer"][0]
                if isinstance(rec["answer"], list) and rec["answer"]
                else rec["answer"]
            )
            qa = [(_with_tag(task, str(rec["question"]).strip()), ans)]
        elif "phrase" in rec and "bbox" in rec:
            task = task or "refer"
            phrase = str(rec["phrase"]).strip()
            box = _bbox_text(rec["bbox"], Path(image.path))
            qa = [(_with_tag(task, f"give me the location of <p>{phrase}</p>"), box)]
        else:
            raise SkipRecord(UNKNOWN_SHAPE, f"keys {sorted(rec)}")
        out = []
        for k, (q, a) in enumerate(qa):
            turns = build_turns([("user", q), ("assistant", a)], 1)
            suffix = f":{k}" if len(qa) > 1 else ""
            out.append(
                Conversation(
                    id=f"{ctx.source}:{key}{suffix}",
                    source=ctx.source,
                    task=task,
                    images=[image],
                    turns=turns,
                )
            )
        return out
