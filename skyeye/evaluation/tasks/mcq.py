"""Multiple choice: the option letter an answer picks (`skyeye.grounding.parse.parse_letter`),
beside the most frequent training letter, the blind model and a random option letter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skyeye.constants import MCQ_LETTERS
from skyeye.evaluation.samples import EvalSample, option_letters
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
    baselines = ("blind", "majority", "random_letter")
    shape = ("letter", "pred")
    record_baselines = ("majority", "blind", "random_letter")
    default_record_baselines = ("majority", "random_letter")

    def score(self, preds: Sequence[Prediction]) -> Scored:
        return score_mcq(preds)

    def record_question(self, sample: EvalSample, prompt: str) -> Question:
        options = tuple(MCQ_LETTERS[: len(sample.candidates)])
        return Question(prompt, gold=sample.answer_letter, reference=sample, options=options)

    def questions(self, record: dict[str, Any], ctx: TileContext) -> list[Question]:
        prompt = qa_pairs(record)[0][0]
        return [Question(prompt, gold=record["meta"]["answer"], options=option_letters(prompt))]

    def majority(self, question: Question, priors: dict[str, Any]) -> Any:
        return priors["mcq_letter"]

    def summarise(self, rows: Rows) -> dict[str, dict[str, Any]]:
        return {"mcq": summarise_choice(rows["mcq"])} if rows.get("mcq") else {}


register_task(McqTask())
