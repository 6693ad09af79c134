"""`EvalConfig`: what one evaluation run measures and how (task, prompt template, limits).

Its own module so that the runner and the report both import it, in one direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from skyeye.evaluation.samples import (
    DEFAULT_MCQ_TEMPLATE,
    DEFAULT_RECORD_TASKS,
    DEFAULT_TEMPLATE,
    EVAL_TASKS,
    check_template,
)
from skyeye.evaluation.tasks import get_task
from skyeye.scene.pipeline import DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_WINDOW


@dataclass
class EvalConfig:
    """What to evaluate and how.

    Args:
        task: one of caption, vqa, mcq, grounding, refseg.
        prompt_template: question template with ``{question}`` (and ``{options}`` for mcq);
            None = ``{question}`` (mcq: the options and the letter instruction, see eval_data).
        limit: evaluate at most this many records of the task (None = all).
        image_root: folder relative image paths resolve against (None = current directory).
        allow_absolute_paths: accept absolute image paths (default: refused, as are paths that
            leave image_root).
        record_tasks: record ``task`` labels to read; None = the task's defaults, empty = all.
        sar_wavelength: placeholder wavelength (µm) for SAR bands; None = the checkpoint's.
        seed: with sampling, record i is generated after ``torch.manual_seed(seed + i)``.
        scene: refseg only: a one-image, one-mask sample whose image is larger than
            ``scene_window`` (native size) is answered by the whole-scene pipeline and compared at
            the label's full resolution (`skyeye.evaluation.scene_eval`); False: always the chat.
        scene_window / scene_overlap / scene_batch / scene_gsd: the scene pipeline's window,
            overlap (px), windows per call and output pixel size (None: native).
        baselines: the baselines scored beside the model (names of
            `skyeye.evaluation.tasks.BASELINES` the task runs on records); None = the task's
            defaults (`Task.default_record_baselines`), empty = none.
    """

    task: str
    prompt_template: str | None = None
    limit: int | None = None
    image_root: str | Path | None = None
    allow_absolute_paths: bool = False
    record_tasks: frozenset[str] | None = None
    sar_wavelength: float | None = None
    seed: int = 0
    scene: bool = True
    scene_window: int = DEFAULT_WINDOW
    scene_overlap: int = DEFAULT_OVERLAP
    scene_batch: int = DEFAULT_BATCH
    scene_gsd: float | None = None
    baselines: tuple[str, ...] | None = field(
        default=None,
        metadata={"help": "baselines scored beside the model; None = the task's defaults"},
    )

    def __post_init__(self) -> None:
        if self.task not in EVAL_TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(EVAL_TASKS)}")
        if self.baselines is not None:
            self.baselines = tuple(self.baselines)
            offered = get_task(self.task).record_baselines
            unknown = [b for b in self.baselines if b not in offered]
            if unknown:
                raise ValueError(
                    f"baseline(s) {', '.join(unknown)} do not run on {self.task} records; "
                    f"choose from: {', '.join(offered) or 'none'}"
                )
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be a positive number of records, got {self.limit}")
        check_template(self.template, self.task)
        if self.scene_window < 1 or not 0 <= self.scene_overlap < self.scene_window:
            raise ValueError(
                f"scene window {self.scene_window} / overlap {self.scene_overlap}: the window must "
                "be positive and the overlap in [0, window)"
            )
        if self.scene_batch < 1 or (self.scene_gsd is not None and self.scene_gsd <= 0):
            raise ValueError("the scene batch must be at least 1 and the scene gsd positive")

    @property
    def scene_settings(self) -> dict[str, object] | None:
        """What the report records of the scene path (None: not a refseg run, or turned off)."""
        if self.task != "refseg" or not self.scene:
            return None
        return {
            "window": self.scene_window,
            "overlap": self.scene_overlap,
            "gsd": self.scene_gsd,
            "batch": self.scene_batch,
        }

    @property
    def record_baselines(self) -> tuple[str, ...]:
        """The baselines this run scores (the task's defaults when `baselines` is None)."""
        if self.baselines is None:
            return get_task(self.task).default_record_baselines
        return self.baselines

    @property
    def template(self) -> str:
        if self.prompt_template is not None:
            return self.prompt_template
        return DEFAULT_MCQ_TEMPLATE if self.task == "mcq" else DEFAULT_TEMPLATE

    @property
    def accepted_tasks(self) -> frozenset[str]:
        return DEFAULT_RECORD_TASKS[self.task] if self.record_tasks is None else self.record_tasks
