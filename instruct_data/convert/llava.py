"""LLaVA / GeoChat_Instruct: ``{id, image, conversations: [{from, value}]}``; boxes may carry ``|<θ>``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from instruct_data.convert.core import (
    MALFORMED,
    ConvertContext,
    SkipRecord,
    build_turns,
    iter_json_records,
    require_image,
)
from instruct_data.schema import Conversation, ImageRef

ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
TAG_TASKS = {
    "[grounding]": "grounding",
    "[refer]": "refer",
    "[identify]": "identify",
    "[detection]": "detection",
    "[caption]": "caption",
    "[vqa]": "vqa",
}
_TAG_RE = re.compile(r"\[(grounding|refer|identify|detection|caption|vqa)\]")


def task_from_text(text: str, default: str = "conversation") -> str:
    """The first task tag in ``text`` (``[refer]`` -> ``"refer"``), else ``default``."""
    m = _TAG_RE.search(text)
    return m.group(1) if m else default


def llava_messages(conversations: Any) -> list[tuple[str, Any]]:
    """LLaVA ``conversations`` -> (role, text); system messages dropped, unknown roles rejected."""
    if not isinstance(conversations, list):
        raise SkipRecord(MALFORMED, "conversations is not a list")
    out = []
    for m in conversations:
        if not isinstance(m, dict):
            raise SkipRecord(MALFORMED, "a conversation entry is not an object")
        role = m.get("from", m.get("role"))
        if role == "system":
            continue
        if role not in ROLE_MAP:
            raise SkipRecord(MALFORMED, f"unknown speaker {role!r}")
        out.append((ROLE_MAP[role], m.get("value", m.get("content"))))
    return out


def image_list(raw: dict) -> list[str]:
    """The ``image`` field as a list (absent -> [])."""
    img = raw.get("image", raw.get("image_id"))
    if img is None:
        return []
    return img if isinstance(img, list) else [img]


def convert_llava(
    raw: dict,
    key: str,
    ctx: ConvertContext,
    default_task: str = "conversation",
    make_images: Callable[[list[str], ConvertContext], list[ImageRef]] | None = None,
) -> Conversation:
    """One LLaVA-style record -> Conversation (``make_images`` may expand or pair images)."""
    if not isinstance(raw, dict):
        raise SkipRecord(MALFORMED, "record is not an object")
    rels = image_list(raw)
    images = make_images(rels, ctx) if make_images else [require_image(ctx, r) for r in rels]
    msgs = llava_messages(raw.get("conversations"))
    n_declared = sum(str(t).count("<image>") for _, t in msgs)
    if n_declared and len(images) > len(rels) and n_declared == len(rels):
        # A converter added images (e.g. the SAR of an optical/SAR pair): give them placeholders too.
        extra = "\n".join(["<image>"] * (len(images) - len(rels)))
        msgs = [
            (r, t.replace("<image>", "<image>\n" + extra, 1) if j == 0 else t)
            for j, (r, t) in enumerate(msgs)
        ]
    turns = build_turns(msgs, len(images))
    rid = raw.get("id", key)
    return Conversation(
        id=f"{ctx.source}:{rid}",
        source=ctx.source,
        task=task_from_text(turns[0].text, default_task),
        images=images,
        turns=turns,
    )


class LlavaConverter:
    """GeoChat_Instruct and other LLaVA-style JSON (list, object-with-list, or JSON Lines)."""

    name = "llava"

    def records(self, input_path: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]:
        for i, raw in enumerate(iter_json_records(input_path, ctx)):
            yield f"{input_path.stem}:{i}", raw

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]:
        return [convert_llava(raw, key, ctx)]
