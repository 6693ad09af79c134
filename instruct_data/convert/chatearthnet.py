"""ChatEarthNet: ``ChatEarthNet_caps_{35,4v}_{split}.json``, a list of ``{"image", "caption"}``.

Each image name exists as a 256x256 PNG in three folders holding band triplets; they are stacked
into one 9-band Sentinel-2 input (B04 B03 B02 | B05 B06 B07 | B08 B11 B12). All-black or all-white
placeholder PNGs are skipped and counted.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from instruct_data.bands import s2_wavelengths
from instruct_data.convert.core import (
    EMPTY_TURN,
    MALFORMED,
    MISSING_IMAGE,
    ConvertContext,
    SkipRecord,
    build_turns,
    iter_json_records,
)
from instruct_data.images import is_placeholder
from instruct_data.schema import Conversation, ImageRef

PLACEHOLDER = "placeholder image"
# (folder candidates, band names) in stacking order.
TRIPLETS: list[tuple[tuple[str, ...], list[str]]] = [
    (("s2_rgb_images/s2_images", "s2_rgb_images"), ["B04", "B03", "B02"]),
    (("s2_band_5_6_7_images/s2_images", "s2_band_5_6_7_images"), ["B05", "B06", "B07"]),
    (("s2_band_8_11_12_images/s2_images", "s2_band_8_11_12_images"), ["B08", "B11", "B12"]),
]
PROMPTS = [
    "Describe this Sentinel-2 image in detail.",
    "Give a detailed description of the land cover in this image.",
    "What does this multispectral image show? Describe it.",
    "Write a caption describing the land-cover composition of this scene.",
]


class ChatEarthNetConverter:
    name = "chatearthnet"

    def records(self, input_path: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]:
        files = (
            sorted(input_path.glob("ChatEarthNet_caps_*.json"))
            if input_path.is_dir()
            else [input_path]
        )
        for f in files:
            for i, raw in enumerate(iter_json_records(f, ctx)):
                yield f"{f.stem}:{i}", raw

    def _find(self, ctx: ConvertContext, folders: tuple[str, ...], name: str) -> Path:
        for d in folders:
            p = ctx.resolve(f"{d}/{name}")
            if p is not None and p.is_file():
                return p
        raise SkipRecord(MISSING_IMAGE, f"{name} not in {folders[0]}")

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]:
        if not isinstance(raw, dict):
            raise SkipRecord(MALFORMED, "record is not an object")
        name = raw.get("image", raw.get("image_id"))
        if not isinstance(name, str) or not name:
            raise SkipRecord(MISSING_IMAGE, "no image name")
        files = [self._find(ctx, folders, Path(name).name) for folders, _ in TRIPLETS]
        if any(is_placeholder(f) for f in files):
            raise SkipRecord(PLACEHOLDER, name)
        bands = [b for _, names in TRIPLETS for b in names]
        image = ImageRef(
            path=[ctx.image_path(f) for f in files],
            modality="multispectral",
            band_names=bands,
            wavelengths=list(s2_wavelengths(bands)),
        )
        caps = raw.get("caption")
        caps = caps if isinstance(caps, list) else [caps]
        caps = [c for c in caps if isinstance(c, str) and c.strip()]
        if not caps:
            raise SkipRecord(EMPTY_TURN, "no caption")
        out = []
        for k, cap in enumerate(caps):
            cid = f"{ctx.source}:{key}" + (f":{k}" if len(caps) > 1 else "")
            prompt = PROMPTS[zlib.crc32(cid.encode()) % len(PROMPTS)]
            turns = build_turns([("user", prompt), ("assistant", cap)], 1)
            out.append(
                Conversation(id=cid, source=ctx.source, task="caption", images=[image], turns=turns)
            )
        return out
