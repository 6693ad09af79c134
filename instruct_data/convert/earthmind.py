"""EarthMind: LLaVA ``{image, conversations}`` JSON; SAR-optical pairs share a file name under
``rgb/img/`` and ``sar/img/``; a multispectral ``image`` is a BigEarthNet-style folder of ``*_Bxx.tif``;
referring segmentation in RefCOCO form (a folder with ``instances.json`` + a ``refs*.p`` pickle).
EarthMind-Bench: ``{file_name, question, candidate[], answer, task_type}``.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson

from instruct_data.bands import S2_WAVELENGTHS, SAR_NAMES, s2_wavelengths
from instruct_data.convert.core import (
    MALFORMED,
    MISSING_IMAGE,
    ConvertContext,
    SkipRecord,
    build_turns,
    iter_json_records,
    require_image,
)
from instruct_data.convert.llava import convert_llava
from instruct_data.convert.safe_pickle import load_plain_pickle
from instruct_data.masks import segmentation_to_rle
from instruct_data.schema import Conversation, ImageRef, Mask, Turn
from skyeye.errors import DataFileError
from skyeye.io.paths import band_folder_names

NOT_IN_CANDIDATES = "answer not in candidates"
MISSING_ANN = "missing annotation"
LETTERS = "ABCDEFGHIJ"


def earthmind_images(rels: list[str], ctx: ConvertContext) -> list[ImageRef]:
    """Resolve images: a band folder -> multispectral; ``rgb/img/X`` with a ``sar/img/X`` -> pair."""
    out: list[ImageRef] = []
    for rel in rels:
        p = ctx.resolve(rel) if isinstance(rel, str) else None
        if p is None:
            raise SkipRecord(MISSING_IMAGE, str(rel))
        if p.is_dir():
            out.append(band_folder_image(ctx, p))
            continue
        out.append(ImageRef(path=ctx.image_path(p), modality="optical"))
        posix = p.as_posix()
        if "/rgb/img/" in f"/{posix}":
            sar = Path(("/" + posix).replace("/rgb/img/", "/sar/img/")[1:])
            if sar.exists():
                out.append(ImageRef(path=ctx.image_path(sar), modality="sar"))
    return out


def band_folder_image(ctx: ConvertContext, folder: Path) -> ImageRef:
    """A band-per-file folder -> ImageRef: Sentinel-2 (``*_B02.tif``) or Sentinel-1 (``*_VV.tif``,
    ``*_VH.tif``, the BigEarthNet-S1 layout). Band names are listed in file order, the order
    `skyeye.io.read_raster` reads a folder in."""
    names = [n.upper() for n in band_folder_names(folder)]
    if all(n in SAR_NAMES for n in names):
        return ImageRef(
            path=ctx.image_path(folder),
            modality="sar",
            band_names=names,
            wavelengths=[None] * len(names),
        )
    if all(n in S2_WAVELENGTHS for n in names):
        return ImageRef(
            path=ctx.image_path(folder),
            modality="multispectral",
            band_names=names,
            wavelengths=s2_wavelengths(names),
        )
    raise SkipRecord(
        MISSING_IMAGE, f"{folder}: band files {names} are neither Sentinel-2 nor Sentinel-1 VV/VH"
    )


def option_texts(candidates: list[str]) -> list[str]:
    """The options without the letter labels some files already put on them ("A. The remote
    sensing image ...", "(B) forest", "C) ..."), when every option carries its own letter in
    order; otherwise as given (an option that merely starts with "A" keeps it)."""
    texts = []
    for letter, candidate in zip(LETTERS, candidates, strict=False):
        found = re.match(rf"\s*(?:\(\s*{letter}\s*\)|{letter}\s*[.):])\s*", candidate)
        if found is None or not candidate[found.end() :].strip():
            return list(candidates)
        texts.append(candidate[found.end() :].strip())
    return texts


def mcq_turns(
    question: str, candidates: list[str], answer: Any, n_images: int
) -> tuple[list[Turn], str]:
    """Multiple-choice question -> turns answering with the option letter; returns (turns, letter).

    Options already labelled with their letters are written once ("A. forest", not
    "A. A. forest"); the answer may be the letter, the option as given or its text."""
    if not candidates or len(candidates) > len(LETTERS):
        raise SkipRecord(MALFORMED, f"{len(candidates)} candidates")
    texts = option_texts(candidates)
    ans = str(answer).strip()
    if ans in candidates:
        letter = LETTERS[candidates.index(ans)]
    elif ans in texts:
        letter = LETTERS[texts.index(ans)]
    elif len(ans.rstrip(".)")) == 1 and ans.rstrip(".)").upper() in LETTERS[: len(candidates)]:
        letter = ans.rstrip(".)").upper()
    else:
        raise SkipRecord(NOT_IN_CANDIDATES, ans[:40])
    opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(texts))
    q = f"{question.strip()}\n{opts}\nAnswer with the option's letter from the given choices directly."
    return build_turns([("user", q), ("assistant", letter)], n_images), letter


class EarthMindConverter:
    """EarthMind training data: a LLaVA JSON file, or a RefCOCO-form folder."""

    name = "earthmind"

    def records(self, input_path: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]:
        if input_path.is_dir():
            yield from self._refcoco_records(input_path, ctx)
            return
        for i, raw in enumerate(iter_json_records(input_path, ctx)):
            yield f"{input_path.stem}:{i}", ("llava", raw)

    def _refcoco_records(self, folder: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]:
        inst = folder / "instances.json"
        refs_files = sorted(folder.glob("refs*.p")) + sorted(folder.glob("refs*.pkl"))
        if not inst.exists() or not refs_files:
            raise FileNotFoundError(
                f"{folder}: a RefCOCO-form folder needs instances.json and a refs*.p pickle"
            )
        ctx.shapes[f"{folder.name}: refcoco ({refs_files[0].name})"] += 1
        try:
            with open(inst, "rb") as f:
                images = {im["id"]: im for im in ijson.items(f, "images.item", use_float=True)}
            with open(inst, "rb") as f:
                anns = {a["id"]: a for a in ijson.items(f, "annotations.item", use_float=True)}
        except (ijson.JSONError, UnicodeDecodeError, KeyError, TypeError) as err:
            # The look-up tables must be whole: a broken one would silently drop references.
            raise DataFileError(
                f"{inst}: cannot read the images/annotations tables ({type(err).__name__}: "
                f"{err}): repair or re-download the file"
            ) from None
        try:
            refs = load_plain_pickle(refs_files[0])
        except (pickle.UnpicklingError, EOFError, ValueError, IndexError, AttributeError) as err:
            raise DataFileError(
                f"{refs_files[0]}: not a readable refs pickle ({err}): repair or re-download it"
            ) from None
        if not isinstance(refs, list):
            raise ValueError(f"{refs_files[0]}: expected a list of refs, got {type(refs).__name__}")
        for i, ref in enumerate(refs):
            rid = ref.get("ref_id", i) if isinstance(ref, dict) else i
            yield f"ref{rid}", ("refcoco", (ref, images, anns))

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]:
        kind, rec = raw
        if kind == "llava":
            c = convert_llava(rec, key, ctx, make_images=earthmind_images)
            if len(c.images) == 2 and c.images[1].modality == "sar":
                c.meta["pair"] = "optical-sar"
            return [c]
        ref, images, anns = rec
        if not isinstance(ref, dict):
            raise SkipRecord(MALFORMED, "ref is not a dict")
        ann = anns.get(ref.get("ann_id"))
        im = images.get(ref.get("image_id"))
        if ann is None or im is None:
            raise SkipRecord(MISSING_ANN, f"ann {ref.get('ann_id')} / image {ref.get('image_id')}")
        image = require_image(
            ctx, im.get("file_name"), modality="optical", size=[int(im["height"]), int(im["width"])]
        )
        rle = segmentation_to_rle(ann["segmentation"], int(im["height"]), int(im["width"]))
        out = []
        for k, s in enumerate(ref.get("sentences", [])):
            sent = (
                (s.get("sent") or s.get("raw") or "").strip()
                if isinstance(s, dict)
                else str(s).strip()
            )
            turns = build_turns(
                [
                    ("user", f"Please segment <p>{sent}</p> in this image."),
                    ("assistant", f"<p>{sent}</p> [SEG]"),
                ],
                1,
            )
            turns[1].masks = [Mask(seg_index=0, rle=rle, image_index=0)]
            out.append(
                Conversation(
                    id=f"{ctx.source}:{key}:{k}",
                    source=ctx.source,
                    task="segmentation",
                    images=[image],
                    turns=turns,
                    meta={"split": ref.get("split"), "category_id": ann.get("category_id")},
                )
            )
        if not out:
            raise SkipRecord("empty turn", "ref without sentences")
        return out


class EarthMindBenchConverter:
    """EarthMind-Bench multiple-choice JSON."""

    name = "earthmind-bench"

    def records(self, input_path: Path, ctx: ConvertContext) -> Iterator[tuple[str, Any]]:
        for i, raw in enumerate(iter_json_records(input_path, ctx)):
            yield f"{input_path.stem}:{i}", raw

    def convert(self, raw: Any, key: str, ctx: ConvertContext) -> list[Conversation]:
        if not isinstance(raw, dict):
            raise SkipRecord(MALFORMED, "record is not an object")
        names = (
            raw["file_name"] if isinstance(raw.get("file_name"), list) else [raw.get("file_name")]
        )
        images = earthmind_images(names, ctx)
        cands = raw.get("candidate", raw.get("candidates")) or []
        if not isinstance(cands, list):
            raise SkipRecord(MALFORMED, "candidate is not a list")
        q = "\n".join(["<image>"] * len(images)) + "\n" + str(raw["question"])
        if cands:
            turns, letter = mcq_turns(q, [str(c) for c in cands], raw["answer"], len(images))
            task, meta = "mcq", {"candidates": [str(c) for c in cands], "answer": letter}
        else:
            turns = build_turns([("user", q), ("assistant", str(raw["answer"]))], len(images))
            task, meta = "vqa", {}
        meta["task_type"] = raw.get("task_type")
        return [
            Conversation(
                id=f"{ctx.source}:{key}",
                source=ctx.source,
                task=task,
                images=images,
                turns=turns,
                meta=meta,
            )
        ]


__all__ = ["EarthMindBenchConverter", "EarthMindConverter", "mcq_turns", "option_texts"]
