"""Short answers (``--task vqa``): exact match of the answer's words (`strip_grounding`: without
a leading mask or the measured note); a yes/no reference is compared with the yes/no the answer
opens with (`parse_yes_no`), as the skyeye-tiny card reads presence answers. Baselines: the
most frequent reference answer of the evaluated records (yes/no apart) and the blind model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skyeye.evaluation.scoring import Prediction, Scored, score_vqa
from skyeye.evaluation.tasks.base import Question, Task, register_task
from skyeye.grounding.parse import parse_yes_no


class VqaTask(Task):
    name = "vqa"
    answer_kind = "text"
    record_baselines = ("majority", "blind")
    default_record_baselines = ("majority",)

    def score(self, preds: Sequence[Prediction]) -> Scored:
        return score_vqa(preds)

    def majority(self, question: Question, priors: dict[str, Any]) -> Any:
        """The most frequent yes/no for a yes/no question, else the most frequent answer."""
        if parse_yes_no(str(question.gold)) is not None:
            return priors["vqa_yes_no"]
        return priors["vqa_answer"]


register_task(VqaTask())
