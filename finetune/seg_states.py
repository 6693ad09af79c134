"""One record's `[SEG]` hidden states with the frozen LLM: what the mask and change stages cache.

Both stages train a decoder alone on top of the frozen model, so each record is run once: the
images through the tower, the prompt through the LLM, and the last hidden state of each `[SEG]`
kept with the images' patch tokens.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from skyeye.grounding.parse import parse_seg_phrases


@torch.no_grad()
def record_seg_states(
    model: Any, example: dict[str, Any], *, bf16: bool = True
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(last hidden states (L, D_text), vision tokens (n_images, N, D_vis), `[SEG]` positions)
    of one collated-free dataset example (`input_ids` (L,), `attention_mask` (L,), images)."""
    ids = example["input_ids"][None]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        embeds, vision, _ = model.embed_inputs(ids, example["pixel_values"], example["wavelengths"])
        out = model.language_model(
            inputs_embeds=embeds,
            attention_mask=example["attention_mask"][None],
            output_hidden_states=True,
        )
    positions = (ids[0] == model.config.seg_token_id).nonzero()[:, 0].tolist()
    return out.hidden_states[-1][0], vision, positions


def seg_classes(lines: list[str]) -> list[str]:
    """The class phrases the ``[SEG]`` tokens of these JSONL records' answers name, sorted
    (``<p>water</p> [SEG]`` -> "water"; phrases are lower-cased; a [SEG] without one is skipped)."""
    found: set[str] = set()
    for line in lines:
        for turn in json.loads(line).get("turns", []):
            if turn.get("role") == "assistant":
                found.update(
                    p.strip().lower() for p in parse_seg_phrases(turn.get("text", "")) if p
                )
    return sorted(found)
