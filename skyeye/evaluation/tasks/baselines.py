"""The baselines every held-out number stands beside, run by the same driver as the model.

- ``blind``: the same weights asked without the image (how much comes from the question alone);
- ``majority``: the most frequent training answer (per class where a class is asked about);
- ``median_box``: the class's median training box;
- ``index_thresholds``: NDWI > t and MNDWI > t on optical tiles, VV < t dB on SAR tiles
  (`skyeye.grounding.label_rules`);
- ``random_letter``: a letter drawn uniformly from the question's options (multiple choice),
  seeded by the run's seed, the record and the question: the same draw in every run.
"""

from __future__ import annotations

import random

from skyeye.evaluation.metrics import box_iou, mask_iou
from skyeye.evaluation.tasks.base import Question, Row, Task, TileContext, register_baseline
from skyeye.grounding.label_rules import (
    index_threshold_mask,
    vv_threshold_mask,
)
from skyeye.grounding.parse import GroundedBox


def blind(task: Task, question: Question, ctx: TileContext) -> Row:
    """The model's answer to the question without the image, parsed by the task."""
    return {"blind": task.parse(ctx.asker.ask_blind(question.prompt).text)}


def majority(task: Task, question: Question, ctx: TileContext) -> Row:
    """The most frequent training answer."""
    return {"baseline": task.majority(question, ctx.priors)}


def median_box(task: Task, question: Question, ctx: TileContext) -> Row:
    """IoU of the class's median training box with the reference box."""
    priors, cls = ctx.priors, question.fields.get("class")
    base = GroundedBox(*priors["box"].get(cls, priors["box_overall"]))
    return {"baseline_iou": box_iou(base, question.reference)}


def index_thresholds(task: Task, question: Question, ctx: TileContext) -> Row:
    """IoU of the index thresholds with the reference mask: NDWI (optical) or VV (SAR) as
    ``baseline_iou``, MNDWI (optical with SWIR) as ``mndwi_iou``; None without the bands."""
    gt, image = question.reference, ctx.image
    mndwi = None
    if ctx.record["images"][0].get("modality") == "sar":
        base = vv_threshold_mask(image, ctx.vv_db_threshold)
    else:
        base = index_threshold_mask(image, "ndwi", ctx.ndwi_threshold)
        mndwi = index_threshold_mask(image, "mndwi", 0.0)
    return {
        "baseline_iou": None if base is None else mask_iou(base, gt),
        "mndwi_iou": None if mndwi is None else mask_iou(mndwi, gt),
    }


def random_letter(task: Task, question: Question, ctx: TileContext) -> Row:
    """One of the question's option letters, uniformly at random (seeded, see the module)."""
    if not question.options:
        raise ValueError(f"a {task.name} question lists no options: no random letter to draw")
    rng = random.Random(f"{ctx.seed}:{ctx.record.get('id')}:{question.prompt}")
    return {"random_letter": rng.choice(question.options)}


for _name, _fn in (
    ("blind", blind),
    ("majority", majority),
    ("median_box", median_box),
    ("index_thresholds", index_thresholds),
    ("random_letter", random_letter),
):
    register_baseline(_name, _fn)
