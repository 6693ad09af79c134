"""Amount: "How much of the image is water?" answered as a share ("about 20%"), scored by
agreement within 10 points, the same 5-point bin and the mean absolute error, beside the class's
most frequent training share and the blind model."""

from __future__ import annotations

from typing import Any

import numpy as np

from skyeye.evaluation.tasks.base import (
    Question,
    Row,
    Rows,
    Task,
    TileContext,
    qa_pairs,
    register_task,
)

#: The share an unparseable answer counts as in the mean absolute error (the middle).
UNPARSEABLE_SHARE = 50.0


def share_bin(value: float) -> int:
    """The 5-point bin of a share: below 1 % is one bin, 1-9 % by the point, then by 5 points."""
    return int(round(value / 5.0)) if value >= 10 else -1 if value < 1 else int(value)


class AmountTask(Task):
    name = "amount"
    answer_kind = "percent"
    gen_tasks = frozenset({"proportion"})
    row_key = "proportion"
    baselines = ("blind", "majority")
    shape = ("number", "pred")

    def questions(self, record: dict[str, Any], ctx: TileContext) -> list[Question]:
        (q, a), cls = qa_pairs(record)[0], record["meta"]["classes"][0]
        return [Question(q, gold=self.parse(a), fields={"class": cls})]

    def majority(self, question: Question, priors: dict[str, Any]) -> Any:
        return priors["proportion"].get(question.fields["class"], priors["proportion_overall"])

    def summarise(self, rows: Rows) -> dict[str, dict[str, Any]]:
        prop = [r for r in rows.get("proportion", []) if r["gold"] is not None]
        if not prop:
            return {}
        return {
            "proportion": {
                "n": len(prop),
                "agreement_within_10pts": _agree(prop, "pred", 10),
                "blind_agreement_within_10pts": _agree(prop, "blind", 10),
                "baseline_agreement_within_10pts": _agree(prop, "baseline", 10),
                "same_bin": _same_bin(prop, "pred"),
                "baseline_same_bin": _same_bin(prop, "baseline"),
                "mae_pts": _mae(prop, "pred"),
                "baseline_mae_pts": _mae(prop, "baseline"),
                "unparseable": int(sum(r["pred"] is None for r in prop)),
            }
        }


def _agree(rows: list[Row], key: str, tol: float) -> float:
    return float(np.mean([r[key] is not None and abs(r[key] - r["gold"]) <= tol for r in rows]))


def _same_bin(rows: list[Row], key: str) -> float:
    return float(
        np.mean([r[key] is not None and share_bin(r[key]) == share_bin(r["gold"]) for r in rows])
    )


def _mae(rows: list[Row], key: str) -> float:
    return float(
        np.mean(
            [abs((r[key] if r[key] is not None else UNPARSEABLE_SHARE) - r["gold"]) for r in rows]
        )
    )


register_task(AmountTask())
