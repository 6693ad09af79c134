"""Scoring of evaluated samples with the metrics of :mod:`skyeye.evaluation`.

Each ``score_<task>`` (how the tasks of `skyeye.evaluation.tasks` score the record runner's
answers) takes the evaluated samples (`Prediction`s) and returns ``(metrics, per_sample,
unparseable_ids)``: the aggregate numbers, one report entry per sample
(added to the common fields the runner writes) and the ids whose answer had nothing to score.
No metric is computed here: the numbers are exactly those of :mod:`skyeye.evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skyeye.evaluation.metrics import (
    caption_metrics,
    grounding_metrics,
    mcq_metrics,
    refseg_metrics,
    vqa_exact_match,
)
from skyeye.evaluation.samples import EvalSample, encode_mask
from skyeye.grounding.parse import GroundedBox, parse_yes_no, strip_grounding
from skyeye.io.resample import resize_mask

Scored = tuple[dict[str, Any], list[dict[str, Any]], list[str]]


@dataclass
class Prediction:
    """The model's answer to one sample.

    text: the answer. boxes: boxes parsed from it. masks: one (H, W) bool per ``[SEG]``, on the
    read grid of the image. image_shapes: (H, W) of each image as read (for rotated-box IoU).
    scene: for a sample answered by the whole-scene pipeline, its window, overlap, gsd and grid
    (the masks are then on the scene's grid); None otherwise.
    """

    sample: EvalSample
    prompt: str
    text: str
    boxes: list[GroundedBox] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    image_shapes: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0
    scene: dict[str, Any] | None = None


def _box_json(box: GroundedBox) -> dict[str, Any]:
    out: dict[str, Any] = {"xyxy": [box.x1, box.y1, box.x2, box.y2]}
    if box.angle is not None:
        out["angle"] = box.angle
    return out


def score_caption(preds: Sequence[Prediction]) -> Scored:
    """BLEU-4 / ROUGE-L / CIDEr-D; each record's reference answer is its one reference caption."""
    m = caption_metrics([p.text for p in preds], [[p.sample.reference] for p in preds])
    metrics = {k: m[k] for k in ("bleu4", "bleu_n", "rouge_l", "cider", "n")}
    per = [{k: s[k] for k in ("bleu4", "rouge_l", "cider")} for s in m["per_sample"]]
    return metrics, per, []


def vqa_answer(text: str, reference: str) -> tuple[str | None, str]:
    """(answer, reference) as VQA compares them: a reference that opens with yes or no (after a
    leading mask) is a yes/no question, and the yes/no each opens with is compared
    (`parse_yes_no`, the skyeye-tiny card's rule: "<p>forest</p> [SEG] Yes, ... (measured on the
    mask: ...)" is "yes"); otherwise the words without a leading mask or the measured note
    (`strip_grounding`). The answer is None when it has nothing of that kind."""
    gold = parse_yes_no(reference)
    if gold is not None:
        return parse_yes_no(text), gold
    return strip_grounding(text) or None, strip_grounding(reference)


def score_vqa(preds: Sequence[Prediction]) -> Scored:
    """Exact match of `vqa_answer`s after `normalize_vqa_answer`; an answer with nothing to
    compare (empty, or no yes/no for a yes/no question) is unparseable and wrong."""
    pairs = [vqa_answer(p.text, p.sample.reference) for p in preds]
    m = vqa_exact_match([a for a, _ in pairs], [r for _, r in pairs])
    per = [{"normalized": s["prediction"], "correct": s["correct"]} for s in m["per_sample"]]
    bad = [p.sample.id for p, (a, _) in zip(preds, pairs, strict=True) if a is None]
    return {"accuracy": m["accuracy"], "n": m["n"]}, per, bad


def score_mcq(preds: Sequence[Prediction]) -> Scored:
    """Letter extraction (`mcq_extract_letter`) against the gold letter; no letter = wrong."""
    m = mcq_metrics([p.text for p in preds], [p.sample.answer_letter or "" for p in preds])
    per = [{k: s[k] for k in ("letter", "gold", "correct")} for s in m["per_sample"]]
    bad = [preds[i].sample.id for i in m["unparseable"]]
    return {"accuracy": m["accuracy"], "n": m["n"]}, per, bad


def score_grounding(preds: Sequence[Prediction]) -> Scored:
    """Acc@0.5 (strict) over all and over parseable samples, mean IoU; Hungarian matching."""
    shapes: list[tuple[int, int] | None] = []
    for p in preds:
        idx = p.sample.ref_box_images[0] if p.sample.ref_box_images else 0
        shapes.append(p.image_shapes[idx] if idx < len(p.image_shapes) else None)
    m = grounding_metrics(
        [p.boxes or None for p in preds], [p.sample.ref_boxes for p in preds], image_shapes=shapes
    )
    per = []
    for p, s in zip(preds, m["per_sample"], strict=True):
        per.append(
            {
                "pred_boxes": [_box_json(b) for b in p.boxes],
                "ref_boxes": [_box_json(b) for b in p.sample.ref_boxes],
                "image_shape": shapes[s["index"]],
                **{k: s[k] for k in ("parseable", "target_ious", "hits", "score", "iou")},
            }
        )
    metrics = {k: v for k, v in m.items() if k not in ("per_sample", "unparseable")}
    return metrics, per, [preds[i].sample.id for i in m["unparseable"]]


def score_refseg(preds: Sequence[Prediction]) -> Scored:
    """gIoU, cIoU, precision@0.5 over reference masks.

    The unit is one reference mask: the k-th ``[SEG]`` of the reference is matched to the k-th
    predicted mask (reading order), resized (nearest) to the reference mask's grid; a missing
    predicted mask counts as an empty mask and makes the record unparseable. Predicted masks
    beyond the reference count are reported (``extra_masks``) but not scored.
    """
    pred_masks: list[np.ndarray | None] = []
    gt_masks: list[np.ndarray] = []
    owner: list[int] = []
    for i, p in enumerate(preds):
        for ref in p.sample.ref_masks:
            k = ref.seg_index
            pm = p.masks[k] if k < len(p.masks) else None
            pred_masks.append(None if pm is None else resize_mask(pm, ref.shape))
            gt_masks.append(ref.decode())
            owner.append(i)
    m = refseg_metrics(pred_masks, gt_masks)
    per: list[dict[str, Any]] = [
        {
            "masks": [],
            "n_pred_masks": len(p.masks),
            "extra_masks": max(0, len(p.masks) - len(p.sample.ref_masks)),
            "parseable": len(p.masks) >= len(p.sample.ref_masks),
        }
        for p in preds
    ]
    for unit, (i, pm) in enumerate(zip(owner, pred_masks, strict=True)):
        s = m["per_sample"][unit]
        ref = preds[i].sample.ref_masks[len(per[i]["masks"])]
        per[i]["masks"].append(
            {
                "seg_index": ref.seg_index,
                "image_index": ref.image_index,
                "iou": s["iou"],
                "intersection": s["intersection"],
                "union": s["union"],
                "pred_rle": None if pm is None else encode_mask(pm),
                "ref_rle": ref.rle,
            }
        )
    metrics = {k: v for k, v in m.items() if k not in ("per_sample", "unparseable")}
    metrics["n_records"] = len(preds)
    bad = [p.sample.id for p, e in zip(preds, per, strict=True) if not e["parseable"]]
    return metrics, per, bad
