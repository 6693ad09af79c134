"""Masks (``--task refseg``): gIoU / cIoU of the answer's masks; on held-out tiles the water
mask beside the index thresholds (NDWI / MNDWI > t optical, VV < t dB SAR), in one block per
label source (index-rule and OSM labels, the SAR rule, masks drawn by people)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from skyeye.evaluation.metrics import iou_summary, mask_iou
from skyeye.evaluation.scoring import Prediction, Scored, score_refseg
from skyeye.evaluation.tasks.base import (
    Question,
    Row,
    Rows,
    Task,
    TileContext,
    register_task,
)
from skyeye.grounding.parse import parse_seg_phrases
from skyeye.io.resample import resize_mask
from skyeye.io.rle import decode_rle

#: The water-mask question asked of hand-drawn tiles (their presence record holds the mask).
WATER_PROMPT = "Show me where the water is in this image with a mask."
#: Held-out scenes whose masks were drawn by people (DLR's UKIS csmask reference masks); the
#: other held-out labels come from index rules, OSM polygons or the SAR threshold rule.
HAND_LABELLED_SCENES = ("ukis-landsat5",)
#: What each water block's numbers are measured against (the model card's dataset names).
WATER_LABELS = {
    "water_tiles": "index-rule (NDWI > 0 and dark) and OSM water labels",
    "water_tiles_sar": "SAR rule water labels (5x5 mean VV < -18 dB)",
    "water_tiles_hand_labelled": "water masks drawn by people (DLR UKIS)",
}


def hand_drawn(row: dict[str, Any], scenes: Sequence[str] = HAND_LABELLED_SCENES) -> bool:
    """Rows of a hand-labelled scene, on its class raster (not an index layer)."""
    return row.get("scene") in scenes and row.get("label_type") == "class_raster"


class RefsegTask(Task):
    """Held out: one water mask per tile, from its water segmentation record or, on a
    hand-drawn tile, from its presence record's water mask (``label_from``)."""

    name = "refseg"
    answer_kind = "mask"
    gen_tasks = frozenset({"segmentation", "presence"})
    row_key = "water"
    baselines = ("index_thresholds",)
    shape = ("mask", "has_seg")

    def __init__(self, hand_labelled_scenes: Sequence[str] = HAND_LABELLED_SCENES) -> None:
        self.hand_labelled_scenes = tuple(hand_labelled_scenes)

    def parse(self, text: str) -> Any:
        return parse_seg_phrases(text)  # the masks come with the reply, not in the text

    def score(self, preds: Sequence[Prediction]) -> Scored:
        return score_refseg(preds)

    def questions(self, record: dict[str, Any], ctx: TileContext) -> list[Question]:
        path = record["images"][0]["path"]
        if path in ctx.asked:
            return []
        meta, modality = record["meta"], record["images"][0].get("modality")
        if meta["gen_task"] == "segmentation":
            turn = record["turns"][1]
            phrases = parse_seg_phrases(turn["text"])
            if not phrases or phrases[0] != "water":
                return []
            prompt = record["turns"][0]["text"].replace("<image>", "").strip()
            question = _water_question(prompt, modality, turn)
        elif hand_drawn(_meta_row(record), self.hand_labelled_scenes):
            pairs = zip(meta.get("answers", []), record["turns"][1::2], strict=False)
            turn = next((t for i, t in pairs if i["class"] == "water" and t.get("masks")), None)
            if turn is None:
                return []
            question = _water_question(WATER_PROMPT, modality, turn)
            question.after["label_from"] = "presence mask"
        else:
            return []
        ctx.asked.add(path)
        return [question]

    def read(self, reply: Any, question: Question, ctx: TileContext) -> Row:
        gt = question.reference
        pred = np.zeros_like(gt)
        if reply.masks:
            m = reply.masks[0]
            pred = m if m.shape == gt.shape else resize_mask(m, gt.shape)
        return {"has_seg": bool(reply.masks), "iou": mask_iou(pred, gt)}

    def summarise(self, rows: Rows) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        water = rows.get("water", [])
        for sar, name, base_name in (
            (False, "water_tiles", "baseline_ndwi"),
            (True, "water_tiles_sar", "baseline_vv"),
        ):
            sub = [
                r
                for r in water
                if (r.get("modality") == "sar") == sar
                and not hand_drawn(r, self.hand_labelled_scenes)
            ]
            if sub:
                out[name] = water_block(sub, base_name, WATER_LABELS[name])
        # Hand-drawn labels apart: index-rule and OSM labels are weak references, and an empty
        # hand-drawn tile would count as a won index-labelled one.
        hand = [
            r
            for r in water + rows.get("water_hand", [])
            if r.get("modality") != "sar" and hand_drawn(r, self.hand_labelled_scenes)
        ]
        if hand:
            name = "water_tiles_hand_labelled"
            out[name] = water_block(hand, "baseline_ndwi", WATER_LABELS[name])
        return out


def _meta_row(record: dict[str, Any]) -> dict[str, Any]:
    meta = record["meta"]
    return {"scene": meta.get("scene_id"), "label_type": meta.get("label_type")}


def _water_question(prompt: str, modality: str | None, turn: dict[str, Any]) -> Question:
    gt = decode_rle(turn["masks"][0]["rle"]).astype(bool)
    return Question(
        prompt,
        fields={"modality": modality},
        reference=gt,
        after={"gt_share": float(gt.mean())},
        write_gold=False,
    )


def water_block(water: list[Row], base_name: str, labels: str) -> dict[str, Any]:
    """Model IoU on every water tile, and model vs baseline on the tiles the baseline covers;
    ``dataset`` names the scenes of these rows and their labels."""
    with_base = [r for r in water if r["baseline_iou"] is not None]
    scenes = sorted({str(r["scene"]) for r in water if r.get("scene")})
    block: dict[str, Any] = {
        "n": len(water),
        "seg_emitted": float(np.mean([r["has_seg"] for r in water])),
        "dataset": f"held-out scenes {', '.join(scenes)}; {labels}",
    }
    for key, val in iou_summary([r["iou"] for r in water]).items():
        block[f"model_{key}" if key != "n" else "n_all"] = val
    tag = base_name.removeprefix("baseline_")
    for key, val in iou_summary([r["iou"] for r in with_base]).items():
        block[f"model_{key}_{tag}_tiles" if key != "n" else f"n_{tag}_tiles"] = val
    for key, val in iou_summary([r["baseline_iou"] for r in with_base]).items():
        if key != "n":
            block[f"{base_name}_{key}"] = val
    # MNDWI > 0 where SWIR exists (optical), with the model on the same tiles.
    with_swir = [r for r in water if r.get("mndwi_iou") is not None]
    if with_swir:
        for key, val in iou_summary([r["iou"] for r in with_swir]).items():
            block[f"model_{key}_mndwi_tiles" if key != "n" else "n_mndwi_tiles"] = val
        for key, val in iou_summary([r["mndwi_iou"] for r in with_swir]).items():
            if key != "n":
                block[f"baseline_mndwi_{key}"] = val
    return block


register_task(RefsegTask())
