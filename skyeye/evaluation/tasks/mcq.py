"""Multiple choice: the option letter an answer picks (`skyeye.grounding.parse.parse_letter`),
beside the most frequent training letter and the blind model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skyeye.evaluation.scoring import Prediction, Scored, score_mcq
from skyeye.evaluation.tasks.base import (
    Question,
    Rows,
    Task,
    TileContext,
    qa_pairs,
    register_task,
)
from skyeye.evaluation.tasks.choice import summarise_choice


class McqTask(Task):
    name = "mcq"
    answer_kind = "letter"
    gen_tasks = frozenset({"mcq"})
    row_key = "mcq"
    baselines = ("blind", "majority")
    shape = ("letter", "pred")

    def score(self, preds: Sequence[Prediction]) -> Scored:
        return score_mcq(preds)

    def questions(self, record: dict[str, Any], ctx: TileContext) -> list[Question]:
        return [Question(qa_pairs(record)[0][0], gold=record["meta"]["answer"])]

    def majority(self, question: Question, priors: dict[str, Any]) -> Any:
        return priors["mcq_letter"]

    def summarise(self, rows: Rows) -> dict[str, dict[str, Any]]:
        return {"mcq": summarise_choice(rows["mcq"])} if rows.get("mcq") else {}


register_task(McqTask())
