"""TerraScope: Terra-CoT ``{image | pre_image+post_image, conversations, masks}`` with one entry per
``[SEG]`` (an RLE or a list of RLEs, OR-ed); ``<think>…</think><answer>…</answer>`` answers kept as is.
A SAR image named under ``s1_images/`` is read from ``s1_images/vv`` and ``s1_images/vh`` by the same
name. For pre/post pairs the first half of the masks lie on the pre image, the second half on the post.
TerraScope-Bench: parquet with ``image{bytes,path}``, ``question``, ``candidates``, ``answer``, ``task_type``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from instruct_data.bands import SAR_NAMES
from instruct_data.convert.core import (
    MALFORMED,
    MISSING_IMAGE,
    SEG_MISMATCH,
    ConvertContext,
    SkipRecord,
    build_turns,
    iter_json_records,
    require_image,
)
from instruct_data.convert.earthmind import mcq_turns
from instruct_data.convert.llava import llava_messages
from instruct_data.masks import union_rles
from instruct_data.schema import SEG_TOKEN, Conversation, ImageRef, Mask
from skyeye.atomic import write_bytes
from skyeye.errors import DataFileError

BAD_MASK = "unreadable mask"


def terrascope_image(ctx: ConvertContext, rel: Any, time: str | None = None) -> ImageRef:
    """Optical image, or a VV/VH SAR pair from ``s1_images/{vv,vh}/NAME``."""
    if not isinstance(rel, str) or not rel:
        raise SkipRecord(MISSING_IMAGE, "no image path")
    parts = Path(rel).parts
    if "s1_images" in parts and ctx.resolve(rel) is None:
        i = parts.index("s1_images")
        base = Path(*parts[: i + 1])
        tail = Path(*parts[i + 1 :])
        found = [ctx.resolve((base / pol / tail).as_posix()) for pol in ("vv", "vh")]
        if None in found:
            raise SkipRecord(MISSING_IMAGE, f"{rel} (looked in s1_images/vv and s1_images/vh)")
        files = [f for f in found if f is not None]
        return ImageRef(
            path=[ctx.image_path(f) for f in files],
            modality="sar",
            band_names=list(SAR_NAMES),
            wavelengths=[None, None],
            time=time,
        )
    return require_image(ctx, rel, modality="optical", time=time)


def _seg_mask(entry: Any) -> dict:
    rles = entry if isinstance(entry, list) else [entry]
    try:
        return union_rles(rles)
    except (ValueError, TypeError, KeyError) as e:
        raise SkipRecord(BAD_MASK, str(e)) from e


class TerraScopeConverter:
    name = "terrascope"

    def records(self, input_path: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]:
        files = sorted(input_path.glob("*.json")) if input_path.is_dir() else [input_path]
        for f in files:
            for i, raw in enumerate(iter_json_records(f, ctx)):
                yield f"{f.stem}:{i}", raw

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]:
        if not isinstance(raw, dict):
            raise SkipRecord(MALFORMED, "record is not an object")
        bitemporal = "pre_image" in raw or "post_image" in raw
        if bitemporal:
            images = [
                terrascope_image(ctx, raw.get("pre_image"), "pre"),
                terrascope_image(ctx, raw.get("post_image"), "post"),
            ]
        else:
            rels = raw.get("image") if isinstance(raw.get("image"), list) else [raw.get("image")]
            images = [terrascope_image(ctx, r) for r in rels]
        turns = build_turns(llava_messages(raw.get("conversations")), len(images))
        masks = raw.get("masks") or []
        n_seg = sum(t.text.count(SEG_TOKEN) for t in turns if t.role == "assistant")
        if not isinstance(masks, list) or len(masks) != n_seg:
            raise SkipRecord(
                SEG_MISMATCH,
                f"{n_seg} [SEG] but {len(masks) if isinstance(masks, list) else '?'} masks",
            )
        if bitemporal and n_seg % 2:
            raise SkipRecord(SEG_MISMATCH, f"pre/post pair with an odd number ({n_seg}) of masks")
        k = 0
        for t in turns:
            if t.role != "assistant":
                continue
            for s in range(t.text.count(SEG_TOKEN)):
                img = (0 if k < n_seg // 2 else 1) if bitemporal else 0
                t.masks.append(Mask(seg_index=s, rle=_seg_mask(masks[k]), image_index=img))
                k += 1
        if bitemporal:
            task = "change"
        elif any("<think>" in t.text for t in turns):
            task = "reasoning"
        else:
            task = "segmentation" if n_seg else "conversation"
        rid = raw.get("id", key)
        return [
            Conversation(
                id=f"{ctx.source}:{rid}", source=ctx.source, task=task, images=images, turns=turns
            )
        ]


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _candidates(v: Any) -> list[str]:
    """Candidates as an ordered list: a list, a {letter: text} dict, or either as a JSON string."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError as e:
            raise SkipRecord(MALFORMED, "candidates is a string but not JSON") from e
    if isinstance(v, dict):
        return [str(v[k]) for k in sorted(v) if v[k] is not None]
    if isinstance(v, list):
        return [str(c) for c in v]
    raise SkipRecord(MALFORMED, f"candidates of type {type(v).__name__}")


class TerraScopeBenchConverter:
    """TerraScope-Bench parquet (needs pyarrow); embedded image bytes go to ``<out stem>_images/``."""

    name = "terrascope-bench"

    def records(self, input_path: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]:
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError(
                "terrascope-bench reads parquet with pyarrow: pip install -c constraints.txt pyarrow"
            ) from e
        files = sorted(input_path.glob("*.parquet")) if input_path.is_dir() else [input_path]
        for f in files:
            try:
                pf = pq.ParquetFile(f)
            except Exception as err:  # noqa: BLE001 - pyarrow raises several types for bad files
                raise DataFileError(f"{f}: not a readable parquet file ({err})") from None
            ctx.shapes[f"{f.name}: parquet columns {','.join(pf.schema_arrow.names)}"] += 1
            i = 0
            for batch in pf.iter_batches(batch_size=64):
                for row in batch.to_pylist():
                    yield f"{f.stem}:{i}", row
                    i += 1

    def _image(self, row: dict, key: str, ctx: ConvertContext) -> ImageRef:
        img = row.get("image")
        if isinstance(img, dict):
            rel, data = img.get("path"), img.get("bytes")
        else:
            rel, data = (img, None) if isinstance(img, str) else (None, None)
        if isinstance(rel, str) and rel and ctx.resolve(rel) is not None:
            return require_image(ctx, rel)
        if not data:
            raise SkipRecord(
                MISSING_IMAGE, f"{rel!r}: not under the image root and no embedded bytes"
            )
        folder = ctx.out_path.parent / f"{ctx.out_path.stem}_images"
        folder.mkdir(parents=True, exist_ok=True)
        name = _SAFE_NAME.sub("_", Path(rel).name if rel else f"{key}.png")
        target = folder / f"{_SAFE_NAME.sub('_', key)}_{name}"
        if not target.exists():
            write_bytes(target, data)
        return ImageRef(path=ctx.image_path(target), modality="optical")

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]:
        image = self._image(raw, key, ctx)
        cands = _candidates(raw.get("candidates"))
        q = "<image>\n" + str(raw.get("question") or "").strip()
        turns, letter = mcq_turns(q, cands, raw.get("answer"), 1)
        meta = {"candidates": cands, "answer": letter, "task_type": raw.get("task_type")}
        return [
            Conversation(
                id=f"{ctx.source}:{key}",
                source=ctx.source,
                task="mcq",
                images=[image],
                turns=turns,
                meta=meta,
            )
        ]
