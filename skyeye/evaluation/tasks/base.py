"""A `Task` knows how to ask, parse and score one question kind (nanochat's ``tasks/common.py``),
and names the baselines it is measured beside; the registries are plain dicts.

One loop asks every question, `skyeye.evaluation.driver.ask_question`: the model's reply, then
each baseline's columns (a function of the task, the `Question` and its `TileContext`). Two
drivers feed it: the record runner (`skyeye.evaluation.runner`, any unified JSONL, one question
per record: `Task.record_question`, the baselines of `Task.record_baselines`, `Task.score` of
the model's and of each baseline's answers) and the held-out driver (`skyeye.evaluation.heldout`,
``from_rasters`` tiles, the skyeye-tiny card: `Task.questions`, `Task.read`, `Task.baselines`,
`Task.summarise`). A new kind (e.g. change) is a `Task` subclass passed to `register_task`, with
its baselines in `BASELINES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from skyeye.evaluation.samples import EvalSample
from skyeye.evaluation.scoring import Prediction, Scored
from skyeye.grounding.parse import ANSWER_PARSERS

Row = dict[str, Any]
Rows = dict[str, list[Row]]


@dataclass
class Question:
    """One question of a held-out record.

    Args:
        prompt: what is asked (the record's user turn, image placeholder removed).
        gold: the parsed reference answer, written in the row (None with ``write_gold`` False).
        fields: row fields written before the question (e.g. the class asked about).
        reference: what the answer is measured against but not written (a box, a mask).
        after: row fields written after the model's and the baselines' columns.
        write_gold: whether the row has a ``gold`` column.
        options: the option letters the question offers (multiple choice), in order.
    """

    prompt: str
    gold: Any = None
    fields: Row = field(default_factory=dict)
    reference: Any = None
    after: Row = field(default_factory=dict)
    write_gold: bool = True
    options: tuple[str, ...] = ()


@dataclass
class TileContext:
    """What a question's model answer and baselines are computed with: the asker, the tile's
    image, its record, the priors (majority answers), the index-baseline thresholds and the
    seed of the random baselines."""

    asker: Any
    image: Any
    record: dict[str, Any]
    priors: dict[str, Any]
    ndwi_threshold: float = 0.0
    vv_db_threshold: float = -15.0
    asked: set[str] = field(default_factory=set)
    seed: int = 0


class Task:
    """One question kind. Subclasses set the class attributes and override what they use.

    name: registry key (the ``--task`` name). answer_kind: key of
    `skyeye.grounding.parse.ANSWER_PARSERS` (the one parser of the kind). gen_tasks: the
    ``meta.gen_task`` values of the held-out records it asks. row_key: the rows list its rows go
    to. baselines: names in `BASELINES`, run for every question by the held-out driver.
    record_baselines: the baselines the record runner can run (each gives one column: an
    answer scored by `Task.score` as the model's is); default_record_baselines: those it runs
    unless told otherwise (no extra model call). shape: (answer-shape name, row column that is
    truthy when the answer has the asked shape).
    """

    name: ClassVar[str]
    answer_kind: ClassVar[str] = "text"
    gen_tasks: ClassVar[frozenset[str]] = frozenset()
    row_key: ClassVar[str] = ""
    baselines: ClassVar[tuple[str, ...]] = ()
    shape: ClassVar[tuple[str, str] | None] = None
    record_baselines: ClassVar[tuple[str, ...]] = ()
    default_record_baselines: ClassVar[tuple[str, ...]] = ()

    def parse(self, text: str) -> Any:
        """The answer as its kind reads it (None when it has nothing of that kind)."""
        return ANSWER_PARSERS[self.answer_kind](text)

    # -- the record runner ----------------------------------------------------------------------
    def score(self, preds: Sequence[Prediction]) -> Scored:
        """(metrics, per-sample entries, unparseable ids) of the record runner's predictions."""
        raise ValueError(
            f"task {self.name!r} is measured on held-out from_rasters data: pass --train"
        )

    def record_question(self, sample: EvalSample, prompt: str) -> Question:
        """The record runner's question of ``sample``: ``prompt``, the reference answer as gold,
        the sample as reference."""
        return Question(prompt, gold=sample.reference, reference=sample, write_gold=False)

    # -- the held-out driver --------------------------------------------------------------------
    def questions(self, record: dict[str, Any], ctx: TileContext) -> list[Question]:
        """The questions a held-out record asks of this task (none by default)."""
        return []

    def read(self, reply: Any, question: Question, ctx: TileContext) -> Row:
        """The row columns of the model's reply."""
        return {"pred": self.parse(reply.text)}

    def majority(self, question: Question, priors: dict[str, Any]) -> Any:
        """The most frequent training answer for ``question`` (the majority baseline)."""
        raise NotImplementedError(f"task {self.name!r} has no majority baseline")

    def summarise(self, rows: Rows) -> dict[str, dict[str, Any]]:
        """Metric blocks (model beside its baselines) from the held-out rows."""
        return {}


Baseline = Callable[[Task, Question, TileContext], Row]

#: Every task by name; `register_task` adds one.
TASKS: dict[str, Task] = {}
#: Every baseline by name: a function of (task, question, context) giving row columns.
BASELINES: dict[str, Baseline] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` to `TASKS` under its name (a name is registered once)."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered already")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task registered as ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def list_tasks() -> list[str]:
    """Registered task names, in registration order."""
    return list(TASKS)


def register_baseline(name: str, baseline: Baseline) -> Baseline:
    """Add ``baseline`` to `BASELINES` under ``name``."""
    if name in BASELINES:
        raise ValueError(f"baseline {name!r} is registered already")
    BASELINES[name] = baseline
    return baseline


def get_baseline(name: str) -> Baseline:
    """The baseline registered as ``name``."""
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}") from None


def list_baselines() -> list[str]:
    """Registered baseline names."""
    return list(BASELINES)


def qa_pairs(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(question, answer) text of each user/assistant pair, image placeholders removed."""
    turns = record["turns"]
    return [
        (turns[i]["text"].replace("<image>", "").strip(), turns[i + 1]["text"])
        for i in range(0, len(turns) - 1, 2)
    ]
