"""Counting: the first whole number of the answer, exact and within one, beside the class's most
frequent training count and the blind model."""

from __future__ import annotations

from typing import Any

from skyeye.evaluation.tasks.base import (
    Question,
    Rows,
    Task,
    TileContext,
    qa_pairs,
    register_task,
)
from skyeye.evaluation.tasks.choice import summarise_choice


class CountTask(Task):
    name = "count"
    answer_kind = "count"
    gen_tasks = frozenset({"count"})
    row_key = "count"
    baselines = ("blind", "majority")
    shape = ("number", "pred")

    def questions(self, record: dict[str, Any], ctx: TileContext) -> list[Question]:
        meta = record["meta"]
        fields = {"class": meta["classes"][0]}
        return [Question(qa_pairs(record)[0][0], gold=int(meta["count"]), fields=fields)]

    def majority(self, question: Question, priors: dict[str, Any]) -> Any:
        return priors["count"].get(question.fields["class"], priors["count_overall"])

    def summarise(self, rows: Rows) -> dict[str, dict[str, Any]]:
        return {"count": summarise_choice(rows["count"])} if rows.get("count") else {}


register_task(CountTask())
