"""The change stage's inputs: change records picked, the change decoder added, frozen states cached.

As `finetune.mask_stage` does for the mask head, the LLM (with its LoRA), the tower and the
projector are frozen, so each change record costs one forward pass, once: per change `[SEG]`
(a `[SEG]` whose phrase names a change, `skyeye.chat.change_seg.is_change_phrase`, in a record
with two or more images: the chat's own rule), the LLM's hidden state at it, both dates' patch
tokens, both dates' full-resolution pixels and wavelengths, and the change mask on the after
image's grid are kept. The change decoder is then trained on them alone (`finetune.change_train`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from finetune.seg_states import record_seg_states
from skyeye.chat.change_answer import GENERAL_PHRASE
from skyeye.chat.change_seg import is_change_phrase
from skyeye.constants import SEG_TOKEN
from skyeye.grounding.parse import parse_seg_phrases

logger = logging.getLogger(__name__)

__all__ = ["cache_change_states", "change_record_lines", "lines_fingerprint", "to_change"]


def _seg_phrases(record: dict) -> list[str | None]:
    """The phrase of every `[SEG]` of the record's answers, in reading order."""
    out: list[str | None] = []
    for turn in record.get("turns") or []:
        if turn.get("role") == "assistant":
            out += parse_seg_phrases(str(turn.get("text", "")))
    return out


def change_record_lines(
    jsonl: Path,
    *,
    whole_change_only: bool = False,
    whole_change_sources: frozenset[str] | None = None,
) -> list[str]:
    """The lines of ``jsonl`` whose record has two or more images and a change `[SEG]`
    (``whole_change_only``: only the records of a pair's whole change mask, ids ending ":what",
    the unit the change baselines are scored on; ``whole_change_sources``: the sources whose
    records of the whole change, `GENERAL_PHRASE`, are kept, the others' per-class records
    only; None: every source's)."""
    kept = []
    with open(jsonl, encoding="utf-8") as handle:
        for line in handle:
            if SEG_TOKEN not in line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            phrases = _seg_phrases(record)
            if len(record.get("images") or []) < 2 or not any(map(is_change_phrase, phrases)):
                continue
            if whole_change_only and not str(record.get("id", "")).endswith(":what"):
                continue
            if (
                whole_change_sources is not None
                and record.get("source") not in whole_change_sources
                and GENERAL_PHRASE in phrases
            ):
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
    return kept


def lines_fingerprint(lines: list[str], *extra: str) -> str:
    """sha256 of the records (and ``extra`` settings): a cache is reused only for the same ones."""
    digest = hashlib.sha256()
    for part in (*extra, *lines):
        digest.update(part.encode("utf-8"))
    return digest.hexdigest()


def to_change(model: Any) -> None:
    """Give ``model`` a change decoder (``config.mask_change``) that starts from its mask head's
    weights (every "hires" weight has the same name in the change decoder; the fusion and
    difference layers are new, drawn from torch's global generator: seed it first)."""
    from skyeye.modeling.mask_decoders import get_change_decoder

    model.config.mask_change = True
    head = get_change_decoder("change")(model.config)
    if model.mask_head is not None:
        head = head.to(next(model.mask_head.parameters()).dtype)
        missing, unexpected = head.load_state_dict(model.mask_head.state_dict(), strict=False)
        if unexpected:
            raise ValueError(f"the mask head has weights the change decoder lacks: {unexpected}")
        logger.info(
            "change decoder from the mask head; new: %s",
            sorted({k.split(".")[0] for k in missing}),
        )
    model.change_head = head


@torch.no_grad()
def cache_change_states(model: Any, dataset: Any, *, bf16: bool = True) -> dict[str, Any]:
    """Per change `[SEG]` of every record of ``dataset`` (an `InstructionDataset` with the
    processor's ``hires_size`` set):

    hidden (M, D_text); vision_before / vision_after (M, N, D_vis); pixels_before / pixels_after
    (lists of (C, H, W)); waves_before / waves_after (lists of (C,)); masks (list of (H, W) on the
    after image's grid); records (list of dataset indices).
    """
    keys = ("hidden", "vision_before", "vision_after", "pixels_before", "pixels_after")
    keys += ("waves_before", "waves_after", "masks", "records")
    cache: dict[str, list[Any]] = {k: [] for k in keys}
    for index in tqdm(range(len(dataset)), desc="caching change [SEG] states", unit="record"):
        example = dataset[index]
        if example is None or not example["masks"] or "pixel_values_hires" not in example:
            continue
        is_change = [is_change_phrase(p) for p in _seg_phrases(dataset.raw_record(index)[1])]
        last, vis, positions = record_seg_states(model, example, bf16=bf16)
        for k, pos in enumerate(positions):
            if k >= len(is_change) or not is_change[k]:
                continue
            before, after = 0, int(example["mask_image_index"][k])
            if after == before:
                continue
            hires, waves = example["pixel_values_hires"], example["wavelengths"]
            cache["hidden"].append(last[pos].float())
            cache["vision_before"].append(vis[before].float())
            cache["vision_after"].append(vis[after].float())
            cache["pixels_before"].append(hires[before].float())
            cache["pixels_after"].append(hires[after].float())
            cache["waves_before"].append(waves[before].float())
            cache["waves_after"].append(waves[after].float())
            cache["masks"].append(example["masks"][k].float())
            cache["records"].append(index)
    if not cache["hidden"]:
        raise ValueError("no change [SEG] in the data: nothing to train the change decoder on")
    stacked: dict[str, Any] = dict(cache)
    for key in ("hidden", "vision_before", "vision_after"):
        stacked[key] = torch.stack(cache[key])
    return stacked
