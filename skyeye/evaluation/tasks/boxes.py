"""Boxes (``--task grounding``): the answer's boxes against the reference; on held-out tiles the
first box's IoU beside the class's median training box."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from skyeye.evaluation.metrics import box_iou
from skyeye.evaluation.scoring import Prediction, Scored, score_grounding
from skyeye.evaluation.tasks.base import (
    Question,
    Row,
    Rows,
    Task,
    TileContext,
    qa_pairs,
    register_task,
)
from skyeye.grounding.parse import GroundedBox


class BoxesTask(Task):
    name = "grounding"
    answer_kind = "boxes"
    gen_tasks = frozenset({"refer"})
    row_key = "refer"
    baselines = ("median_box",)
    shape = ("box", "has_box")
    record_baselines = ("blind",)

    def score(self, preds: Sequence[Prediction]) -> Scored:
        return score_grounding(preds)

    def questions(self, record: dict[str, Any], ctx: TileContext) -> list[Question]:
        gold = GroundedBox(*record["turns"][-1]["boxes"][0]["xyxy"])
        fields = {"class": record["meta"]["classes"][0]}
        return [Question(qa_pairs(record)[0][0], fields=fields, reference=gold, write_gold=False)]

    def read(self, reply: Any, question: Question, ctx: TileContext) -> Row:
        boxes = self.parse(reply.text)
        first = boxes[0] if boxes else None
        return {
            "has_box": bool(boxes),
            "iou": box_iou(first, question.reference) if first else 0.0,
            "box": None if first is None else [first.x1, first.y1, first.x2, first.y2],
        }

    def summarise(self, rows: Rows) -> dict[str, dict[str, Any]]:
        refer = rows.get("refer", [])
        if not refer:
            return {}
        return {
            "refer": {
                "n": len(refer),
                "acc_at_0_5": float(np.mean([r["iou"] > 0.5 for r in refer])),
                "baseline_median_box_acc_at_0_5": float(
                    np.mean([r["baseline_iou"] > 0.5 for r in refer])
                ),
                "mean_iou": float(np.mean([r["iou"] for r in refer])),
                "baseline_median_box_mean_iou": float(np.mean([r["baseline_iou"] for r in refer])),
                "distinct_boxes": len({tuple(r["box"]) for r in refer if r["box"] is not None}),
            }
        }


register_task(BoxesTask())
