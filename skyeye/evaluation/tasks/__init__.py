"""One `Task` per question kind (presence, amount, count, mcq, grounding/boxes, caption, vqa,
refseg/water) and the baselines they are measured beside; `get_task` / `list_tasks`,
`get_baseline` / `list_baselines` read the registries (see `skyeye.evaluation.tasks.base`)."""

from skyeye.evaluation.tasks import baselines as _baselines  # noqa: F401  (registers them)
from skyeye.evaluation.tasks.amount import AmountTask
from skyeye.evaluation.tasks.base import (
    BASELINES,
    TASKS,
    Question,
    Task,
    TileContext,
    get_baseline,
    get_task,
    list_baselines,
    list_tasks,
    register_baseline,
    register_task,
)
from skyeye.evaluation.tasks.boxes import BoxesTask
from skyeye.evaluation.tasks.caption import CaptionTask
from skyeye.evaluation.tasks.count import CountTask
from skyeye.evaluation.tasks.mcq import McqTask
from skyeye.evaluation.tasks.presence import PresenceTask
from skyeye.evaluation.tasks.refseg import RefsegTask
from skyeye.evaluation.tasks.vqa import VqaTask

__all__ = [
    "BASELINES",
    "TASKS",
    "AmountTask",
    "BoxesTask",
    "CaptionTask",
    "CountTask",
    "McqTask",
    "PresenceTask",
    "Question",
    "RefsegTask",
    "Task",
    "TileContext",
    "VqaTask",
    "get_baseline",
    "get_task",
    "list_baselines",
    "list_tasks",
    "register_baseline",
    "register_task",
]
