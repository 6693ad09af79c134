"""Evaluation metrics with explicit, documented rules (the numbers must be reproducible).

Every ``*_metrics`` function returns the aggregate numbers plus ``per_sample`` details.

* Boxes: IoU on normalised coordinates; rotated boxes are intersected as polygons (convex
  clipping, exact for rotated rectangles) in a frame of the image's aspect ratio.
  Acc@0.5 counts IoU strictly > 0.5.
* Referring segmentation: gIoU = mean per-sample IoU (empty union = 1), cIoU = Σ inter / Σ union,
  precision@t = share of samples with IoU strictly > t.
* VQA exact match, MCQ letters (`skyeye.grounding.parse.parse_letter`), captions (BLEU-4, ROUGE-L, CIDEr-D in
  :mod:`skyeye.evaluation.caption_metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from skyeye.constants import MCQ_LETTERS
from skyeye.evaluation.caption_metrics import bleu, caption_metrics, cider_d, rouge_l, tokenize
from skyeye.grounding.parse import GroundedBox, box_corners
from skyeye.grounding.parse import parse_letter as mcq_extract_letter

logger = logging.getLogger(__name__)

__all__ = [
    "bleu",
    "box_iou",
    "caption_metrics",
    "cider_d",
    "grounding_metrics",
    "iou_summary",
    "mask_iou",
    "mcq_extract_letter",
    "mcq_metrics",
    "normalize_vqa_answer",
    "refseg_metrics",
    "rouge_l",
    "tokenize",
    "vqa_exact_match",
]

Polygon = list[tuple[float, float]]


# ---------------------------------------------------------------- boxes
def _area(poly: Polygon) -> float:
    n = len(poly)
    return (
        abs(
            sum(
                poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1]
                for i in range(n)
            )
        )
        / 2.0
    )


def _ccw(poly: Polygon) -> Polygon:
    n = len(poly)
    signed = sum(
        poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1] for i in range(n)
    )
    return poly if signed >= 0 else poly[::-1]


def _clip(subject: Polygon, clipper: Polygon) -> Polygon:
    """Sutherland-Hodgman: ``subject`` clipped by the convex ``clipper`` (both counter-clockwise)."""

    def inside(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> bool:
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) >= 0

    def cross_point(
        p: tuple[float, float],
        q: tuple[float, float],
        a: tuple[float, float],
        b: tuple[float, float],
    ) -> tuple[float, float]:
        # Intersection of segment p-q with the infinite line a-b.
        d1 = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
        d2 = (b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0])
        t = d1 / (d1 - d2)
        return (p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]))

    out = subject
    for i in range(len(clipper)):
        a, b = clipper[i], clipper[(i + 1) % len(clipper)]
        inp, out = out, []
        if not inp:
            break
        for j in range(len(inp)):
            p, q = inp[j - 1], inp[j]
            if inside(q, a, b):
                if not inside(p, a, b):
                    out.append(cross_point(p, q, a, b))
                out.append(q)
            elif inside(p, a, b):
                out.append(cross_point(p, q, a, b))
    return out


def box_iou(a: GroundedBox, b: GroundedBox, image_shape: tuple[int, int] | None = None) -> float:
    """IoU of two boxes. Axis-aligned unless either has a non-zero angle.

    ``image_shape`` (H, W) sets the aspect ratio in which rotated boxes are rotated; None
    treats the image as square (the axis-aligned IoU does not depend on it).
    """
    if not a.angle and not b.angle:
        iw = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
        ih = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
        inter = iw * ih
        union = a.width * a.height + b.width * b.height - inter
        return inter / union if union > 0 else 0.0
    h, w = image_shape if image_shape is not None else (1, 1)
    pa = _ccw(box_corners(a, w, h))
    pb = _ccw(box_corners(b, w, h))
    inter = _area(_clip(pa, pb)) if _area(pa) > 0 and _area(pb) > 0 else 0.0
    union = _area(pa) + _area(pb) - inter
    return inter / union if union > 0 else 0.0


def _assign(iou: np.ndarray) -> list[tuple[int, int]]:
    """Maximum-total-IoU one-to-one matching (Hungarian, O(n^3)); returns (row, col) pairs."""
    n_rows, n_cols = iou.shape
    if n_rows == 0 or n_cols == 0:
        return []
    transposed = n_rows > n_cols
    cost = -(iou.T if transposed else iou)  # rows <= cols
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=int)  # p[j]: row (1-based) matched to column j
    way = np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0, delta, j1 = p[j0], np.inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    pairs = [(int(p[j]) - 1, j - 1) for j in range(1, m + 1) if p[j] != 0]
    return [(c, r) for r, c in pairs] if transposed else pairs


def grounding_metrics(
    preds: Sequence[Sequence[GroundedBox] | None],
    targets: Sequence[Sequence[GroundedBox]],
    *,
    image_shapes: Sequence[tuple[int, int] | None] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Box grounding accuracy (Acc@0.5, IoU strictly > ``threshold``) and mean IoU.

    Matching rule: per sample, target and predicted boxes are matched one-to-one by maximum
    total IoU (Hungarian). A target is a hit if its matched IoU > threshold. The sample score
    is ``hits / max(n_targets, n_preds)`` (so extra boxes cost, and with one target and one
    box it is 0 or 1); the sample IoU is ``Σ matched IoU / max(n_targets, n_preds)``.
    A prediction that is None or has no box is unparseable: a miss (score 0, IoU 0) in
    ``acc@0.5``/``mean_iou`` and left out of the ``*_parseable`` numbers.
    """
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
    if image_shapes is not None and len(image_shapes) != len(targets):
        raise ValueError(f"got {len(image_shapes)} image shapes for {len(targets)} samples")
    per_sample: list[dict[str, Any]] = []
    for i, (pred, tgt) in enumerate(zip(preds, targets, strict=True)):
        if not tgt:
            raise ValueError(f"sample {i} has no target box; grounding needs at least one")
        shape = image_shapes[i] if image_shapes is not None else None
        if not pred:
            per_sample.append(
                {
                    "index": i,
                    "parseable": False,
                    "target_ious": [0.0] * len(tgt),
                    "hits": 0,
                    "score": 0.0,
                    "iou": 0.0,
                }
            )
            continue
        iou = np.array([[box_iou(t, p, shape) for p in pred] for t in tgt])
        target_ious = [0.0] * len(tgt)
        for r, c in _assign(iou):
            target_ious[r] = float(iou[r, c])
        denom = max(len(tgt), len(pred))
        hits = sum(v > threshold for v in target_ious)
        per_sample.append(
            {
                "index": i,
                "parseable": True,
                "target_ious": target_ious,
                "hits": int(hits),
                "score": hits / denom,
                "iou": sum(target_ious) / denom,
            }
        )
    n = len(per_sample)
    parseable = [s for s in per_sample if s["parseable"]]
    key = f"acc@{threshold:g}"

    def mean(vals: list[float]) -> float:
        return float(sum(vals) / len(vals)) if vals else 0.0

    return {
        key: mean([s["score"] for s in per_sample]),
        f"{key}_parseable": mean([s["score"] for s in parseable]),
        "mean_iou": mean([s["iou"] for s in per_sample]),
        "mean_iou_parseable": mean([s["iou"] for s in parseable]),
        "n": n,
        "n_parseable": len(parseable),
        "unparseable": [s["index"] for s in per_sample if not s["parseable"]],
        "per_sample": per_sample,
    }


# ---------------------------------------------------------------- masks
def _as_bool(mask: Any, what: str) -> np.ndarray:
    arr = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(
                f"{what} must be boolean or 0/1 masks; threshold logits first (logits > 0)"
            )
        arr = arr.astype(bool)
    return arr


def _unit_iou(inter: int, union: int) -> float:
    """IoU of one unit; an empty union (empty prediction, empty target) is a perfect 1."""
    return inter / union if union else 1.0


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[float, int, int]:
    """(IoU, intersection, union) of two boolean masks of one grid (both empty: IoU 1)."""
    inter, union = int((pred & gt).sum()), int((pred | gt).sum())
    return _unit_iou(inter, union), inter, union


def iou_summary(units: Sequence[tuple[float, int, int]]) -> dict[str, float]:
    """gIoU and cIoU of (IoU, intersection, union) units, by the rules of `refseg_metrics`
    (cIoU 1 when every union is empty); ``{"n": 0}`` without units."""
    if not units:
        return {"n": 0}
    tot_i, tot_u = sum(u[1] for u in units), sum(u[2] for u in units)
    return {
        "n": len(units),
        "giou": float(np.mean([u[0] for u in units])),
        "ciou": float(_unit_iou(tot_i, tot_u)),
    }


def refseg_metrics(
    pred_masks: Sequence[Any | None],
    gt_masks: Sequence[Any],
    *,
    thresholds: Sequence[float] = (0.5,),
) -> dict[str, Any]:
    """Referring segmentation: gIoU, cIoU and precision@t over (H, W) masks, one per sample.

    gIoU = mean per-sample IoU (a sample with empty prediction and empty target has IoU 1);
    cIoU = Σ intersection / Σ union over all samples (1 if every union is empty);
    precision@t = share of samples with IoU strictly > t. A None prediction (no ``[SEG]`` in
    the answer) is scored as an empty mask and listed in ``unparseable``.
    """
    if len(pred_masks) != len(gt_masks):
        raise ValueError(f"got {len(pred_masks)} predicted masks for {len(gt_masks)} targets")
    per_sample: list[dict[str, Any]] = []
    tot_i = tot_u = 0
    for i, (pm, gm) in enumerate(zip(pred_masks, gt_masks, strict=True)):
        g = _as_bool(gm, "targets")
        p = np.zeros_like(g) if pm is None else _as_bool(pm, "predictions")
        if p.shape != g.shape:
            raise ValueError(
                f"sample {i}: predicted mask {p.shape} and target {g.shape} differ; "
                "resize the prediction to the target grid first"
            )
        iou, inter, union = mask_iou(p, g)
        tot_i += inter
        tot_u += union
        per_sample.append(
            {
                "index": i,
                "parseable": pm is not None,
                "intersection": inter,
                "union": union,
                "iou": iou,
            }
        )
    n = len(per_sample)
    out: dict[str, Any] = {
        "giou": float(np.mean([s["iou"] for s in per_sample])) if n else 0.0,
        "ciou": _unit_iou(tot_i, tot_u),
    }
    for t in thresholds:
        out[f"precision@{t:g}"] = float(np.mean([s["iou"] > t for s in per_sample])) if n else 0.0
    out.update(
        n=n,
        unparseable=[s["index"] for s in per_sample if not s["parseable"]],
        per_sample=per_sample,
    )
    return out


# ---------------------------------------------------------------- VQA and MCQ
def normalize_vqa_answer(text: str) -> str:
    """Lower-case, strip leading/trailing spaces and dots, collapse inner whitespace.

    Inner dots stay ("3.5"); "Yes." and " yes " both become "yes".
    """
    return " ".join(str(text).lower().split()).strip(" .")


def vqa_exact_match(
    preds: Sequence[str | None], refs: Sequence[str | Sequence[str]]
) -> dict[str, Any]:
    """Exact match after :func:`normalize_vqa_answer`; a reference may list several answers."""
    if len(preds) != len(refs):
        raise ValueError(f"got {len(preds)} predictions for {len(refs)} references")
    per_sample: list[dict[str, Any]] = []
    for i, (p, r) in enumerate(zip(preds, refs, strict=True)):
        answers = [r] if isinstance(r, str) else list(r)
        norm = normalize_vqa_answer(p) if p is not None else None
        ok = norm is not None and norm in {normalize_vqa_answer(a) for a in answers}
        per_sample.append({"index": i, "prediction": norm, "correct": bool(ok)})
    n = len(per_sample)
    return {
        "accuracy": sum(s["correct"] for s in per_sample) / n if n else 0.0,
        "n": n,
        "per_sample": per_sample,
    }


def mcq_metrics(preds: Sequence[str | None], answers: Sequence[str]) -> dict[str, Any]:
    """Accuracy of :func:`mcq_extract_letter` against gold letters; no letter = wrong."""
    if len(preds) != len(answers):
        raise ValueError(f"got {len(preds)} predictions for {len(answers)} answers")
    per_sample: list[dict[str, Any]] = []
    for i, (p, a) in enumerate(zip(preds, answers, strict=True)):
        gold = str(a).strip().upper()
        if gold not in MCQ_LETTERS:
            raise ValueError(f"sample {i}: gold answer {a!r} is not one of A-D")
        letter = mcq_extract_letter(p)
        per_sample.append({"index": i, "letter": letter, "gold": gold, "correct": letter == gold})
    n = len(per_sample)
    return {
        "accuracy": sum(s["correct"] for s in per_sample) / n if n else 0.0,
        "n": n,
        "unparseable": [s["index"] for s in per_sample if s["letter"] is None],
        "per_sample": per_sample,
    }
