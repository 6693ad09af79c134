"""Presence: "Is there water?" answered yes or no, per class, beside the class's majority answer
and the blind model."""

from __future__ import annotations

from typing import Any

import numpy as np

from skyeye.evaluation.tasks.base import (
    Question,
    Rows,
    Task,
    TileContext,
    qa_pairs,
    register_task,
)


class PresenceTask(Task):
    """Each question/answer pair of a presence record, asked in a fresh conversation."""

    name = "presence"
    answer_kind = "yes_no"
    gen_tasks = frozenset({"presence"})
    row_key = "presence"
    baselines = ("blind", "majority")
    shape = ("yes_no", "pred")

    def questions(self, record: dict[str, Any], ctx: TileContext) -> list[Question]:
        answers = record["meta"].get("answers", [])
        return [
            Question(q, gold=self.parse(a), fields={"class": item["class"]})
            for (q, a), item in zip(qa_pairs(record), answers, strict=False)
        ]

    def majority(self, question: Question, priors: dict[str, Any]) -> Any:
        return priors["presence"].get(question.fields["class"], priors["presence_overall"])

    def summarise(self, rows: Rows) -> dict[str, dict[str, Any]]:
        pres = rows.get("presence", [])
        if not pres:
            return {}
        per_class: dict[str, dict[str, float]] = {}
        for cls in sorted({r["class"] for r in pres}):
            sub = [r for r in pres if r["class"] == cls]
            per_class[cls] = {
                "n": len(sub),
                "model": _accuracy(sub, "pred"),
                "majority": _accuracy(sub, "baseline"),
            }
        return {
            "presence": {
                "n": len(pres),
                "accuracy": _accuracy(pres, "pred"),
                "baseline_majority_accuracy": _accuracy(pres, "baseline"),
                "blind_accuracy": float(np.mean([r.get("blind") == r["gold"] for r in pres])),
                "unparseable": int(sum(r["pred"] is None for r in pres)),
                "per_class": per_class,
            }
        }


def _accuracy(rows: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([r[key] == r["gold"] for r in rows]))


register_task(PresenceTask())
