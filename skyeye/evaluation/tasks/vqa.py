"""Short answers (``--task vqa``): exact match of the answer's words (`strip_grounding`: without
a leading mask or the measured note); a yes/no reference is compared with the yes/no the answer
opens with (`parse_yes_no`), as the skyeye-tiny card reads presence answers."""

from __future__ import annotations

from collections.abc import Sequence

from skyeye.evaluation.scoring import Prediction, Scored, score_vqa
from skyeye.evaluation.tasks.base import Task, register_task


class VqaTask(Task):
    name = "vqa"
    answer_kind = "text"

    def score(self, preds: Sequence[Prediction]) -> Scored:
        return score_vqa(preds)


register_task(VqaTask())
