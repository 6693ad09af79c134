"""LEVIR-CC (change captions) and LEVIR-MCI (captions + change masks of buildings and roads).

Layout (the datasets' public READMEs; Liu et al., TGRS 2022 and 2024)::

    LevirCCcaptions.json   {"images": [{"filepath": "train", "filename": "train_000001.png",
                            "split": "train", "changeflag": 0|1, "imgid": 0,
                            "sentences": [{"raw": " the scene is the same as before ", ...}, ...]}]}
    images/<split>/A/<filename>       before
    images/<split>/B/<filename>       after
    images/<split>/label/<filename>   LEVIR-MCI only: RGB label, first channel 0 no change,
                                      128 road, 255 building (as Change-Agent's loader reads it)

One conversation per pair: the first caption as the answer, every caption in
``meta.references`` (for caption metrics), the dataset split in ``meta.dataset_split``. LEVIR-MCI
answers look first: one ``[SEG]`` per changed class present (an empty "changes" mask when
nothing changed), then the caption.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from instruct_data.convert.core import (
    MALFORMED,
    MISSING_IMAGE,
    ConvertContext,
    SkipRecord,
    iter_json_records,
    require_image,
)
from instruct_data.schema import IMAGE_TOKEN, Conversation, Mask, Turn
from skyeye.io.rle import encode_mask

NO_CAPTION = "no caption"
BAD_LABEL = "unreadable label"
#: Label value (first channel) -> the class phrase of its change mask.
MCI_CLASSES: dict[int, str] = {255: "changed buildings", 128: "changed roads"}
LICENCE = {
    "licence": "LEVIR-CC / LEVIR-MCI dataset terms (research use; check before commercial use)",
    "commercial_use": False,
}
PROMPT = "Describe the changes between the two images."
MCI_PROMPT = "What changed between the two images? Show the changed buildings and roads."


def _captions(raw: dict) -> list[str]:
    out = []
    for s in raw.get("sentences") or []:
        text = s.get("raw") if isinstance(s, dict) else None
        if not isinstance(text, str) and isinstance(s, dict) and isinstance(s.get("tokens"), list):
            text = " ".join(str(t) for t in s["tokens"])
        if isinstance(text, str) and text.strip():
            text = " ".join(text.split())
            out.append(text[0].upper() + text[1:] + ("" if text.endswith(".") else "."))
    return out


class LevirCCConverter:
    """LEVIR-CC change captions: ``--input LevirCCcaptions.json --images DATASET_ROOT``."""

    name = "levir-cc"

    def records(self, input_path: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]:
        for i, raw in enumerate(iter_json_records(input_path, ctx)):
            key = raw.get("filename", i) if isinstance(raw, dict) else i
            yield f"{input_path.stem}:{key}", raw

    def _pair(self, raw: Any, ctx: ConvertContext) -> tuple[str, str, list, list[str]]:
        if not isinstance(raw, dict):
            raise SkipRecord(MALFORMED, "record is not an object")
        split, name = raw.get("filepath") or raw.get("split"), raw.get("filename")
        if not isinstance(split, str) or not isinstance(name, str) or not name:
            raise SkipRecord(MALFORMED, "no filepath/filename")
        captions = _captions(raw)
        if not captions:
            raise SkipRecord(NO_CAPTION, name)
        images = [
            require_image(ctx, f"images/{split}/{folder}/{name}", modality="optical", time=time)
            for folder, time in (("A", "pre"), ("B", "post"))
        ]
        return split, name, images, captions

    def _meta(self, raw: dict, split: str, captions: list[str]) -> dict:
        return {
            "references": captions,
            "dataset_split": split,
            "changeflag": raw.get("changeflag"),
            **LICENCE,
        }

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]:
        split, name, images, captions = self._pair(raw, ctx)
        turns = [
            Turn("user", f"{IMAGE_TOKEN}\n{IMAGE_TOKEN}\n{PROMPT}"),
            Turn("assistant", captions[0]),
        ]
        return [
            Conversation(
                id=f"{ctx.source}:{split}/{name}",
                source=ctx.source,
                task="change",
                images=images,
                turns=turns,
                meta=self._meta(raw, split, captions),
            )
        ]


class LevirMCIConverter(LevirCCConverter):
    """LEVIR-MCI: LEVIR-CC's captions plus ``images/<split>/label/`` change masks."""

    name = "levir-mci"

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]:
        split, name, images, captions = self._pair(raw, ctx)
        label_path = ctx.resolve(f"images/{split}/label/{name}")
        if label_path is None:
            raise SkipRecord(MISSING_IMAGE, f"images/{split}/label/{name}")
        try:
            with Image.open(label_path) as label_image:
                label = np.asarray(label_image)
        except OSError as err:
            raise SkipRecord(BAD_LABEL, f"{name}: {err}") from None
        first = label[..., 0] if label.ndim == 3 else label
        parts, masks = [], []
        for value, phrase in MCI_CLASSES.items():
            mask = first == value
            if mask.any():
                parts.append(f"<p>{phrase}</p> [SEG]")
                masks.append(mask)
        if not masks:  # nothing changed: the mask says so (empty), then the caption
            parts, masks = ["<p>changes</p> [SEG]"], [np.zeros(first.shape, bool)]
        answer = Turn(
            "assistant",
            " ".join(parts) + " " + captions[0],
            masks=[
                Mask(seg_index=k, rle=encode_mask(m), image_index=1) for k, m in enumerate(masks)
            ],
        )
        return [
            Conversation(
                id=f"{ctx.source}:{split}/{name}",
                source=ctx.source,
                task="change",
                images=images,
                turns=[Turn("user", f"{IMAGE_TOKEN}\n{IMAGE_TOKEN}\n{MCI_PROMPT}"), answer],
                meta=self._meta(raw, split, captions),
            )
        ]
