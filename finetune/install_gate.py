"""The install rule in code: a retrained model replaces the installed one only if every held-out
number the installed one had stays at least as good.

The installed model's numbers are its card's ``model-index`` (what `finetune.skyeye_tiny`'s
install stage wrote from its validation and change reports); the candidate's are the same
reports of the new run, read the way the card reads them (`skyeye.hub.card.read_evaluation`).
Only the model's own numbers are compared, never the baselines beside them: metric names
``MODEL_HIGHER`` / ``MODEL_LOWER`` list which count and in which direction. A number the
installed card has and the candidate's reports lack is a loss too (a held-out row dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skyeye.hub.card import Evaluation

#: Model metrics where higher is better (accuracies, overlaps, agreement with the reference).
MODEL_HIGHER = frozenset(
    {
        "accuracy", "within_1", "acc_at_0_5", "mean_iou", "agreement_within_10pts", "same_bin",
        "model_giou", "model_ciou", "model_giou_ndwi_tiles", "model_ciou_ndwi_tiles",
        "model_giou_mndwi_tiles", "model_ciou_mndwi_tiles", "model_giou_vv_tiles",
        "model_ciou_vv_tiles", "model_iou", "giou", "ciou", "f1",
    }
)  # fmt: skip
#: Model metrics where lower is better.
MODEL_LOWER = frozenset({"mae_pts", "unparseable"})


@dataclass(frozen=True)
class Loss:
    """One held-out number the candidate does worse on (or lacks: ``candidate`` None)."""

    task: str
    metric: str
    installed: float
    candidate: float | None

    def __str__(self) -> str:
        new = "missing" if self.candidate is None else f"{self.candidate:.4g}"
        return f"{self.task} {self.metric} {self.installed:.4g} -> {new}"


def installed_numbers(card: Path) -> dict[tuple[str, str], float]:
    """{(task, metric): value} of a model card's ``model-index`` (empty without one)."""
    from huggingface_hub import ModelCard

    if not card.is_file():
        return {}
    results = ModelCard.load(str(card)).data.eval_results or []
    return {(str(r.task_name), str(r.metric_type)): float(r.metric_value) for r in results}


def losses(installed: dict[tuple[str, str], float], candidate: list[Evaluation]) -> list[Loss]:
    """Every model number of ``installed`` that ``candidate`` does worse on or lacks."""
    new = {(ev.task, name): value for ev in candidate for name, value in ev.metrics}
    out = []
    for (task, metric), old in sorted(installed.items()):
        if metric not in MODEL_HIGHER and metric not in MODEL_LOWER:
            continue  # a baseline, a count of tiles, a share: not the model's score
        value = new.get((task, metric))
        if value is None:
            out.append(Loss(task, metric, old, None))
        elif (value < old) if metric in MODEL_HIGHER else (value > old):
            out.append(Loss(task, metric, old, value))
    return out
