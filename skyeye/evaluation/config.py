"""`EvalConfig`: what one evaluation run measures and how (task, prompt template, limits).

Its own module so that the runner and the report both import it, in one direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skyeye.evaluation.samples import (
    DEFAULT_MCQ_TEMPLATE,
    DEFAULT_RECORD_TASKS,
    DEFAULT_TEMPLATE,
    EVAL_TASKS,
    check_template,
)


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
    """

    task: str
    prompt_template: str | None = None
    limit: int | None = None
    image_root: str | Path | None = None
    allow_absolute_paths: bool = False
    record_tasks: frozenset[str] | None = None
    sar_wavelength: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in EVAL_TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(EVAL_TASKS)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be a positive number of records, got {self.limit}")
        check_template(self.template, self.task)

    @property
    def template(self) -> str:
        if self.prompt_template is not None:
            return self.prompt_template
        return DEFAULT_MCQ_TEMPLATE if self.task == "mcq" else DEFAULT_TEMPLATE

    @property
    def accepted_tasks(self) -> frozenset[str]:
        return DEFAULT_RECORD_TASKS[self.task] if self.record_tasks is None else self.record_tasks
