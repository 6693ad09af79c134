"""The one driver loop of every evaluation: ask a `Question` of a `Task`, read the reply, run
the baselines beside it.

`ask_question` is what the held-out driver (`skyeye.evaluation.heldout`, the skyeye-tiny card)
and the record runner (`skyeye.evaluation.runner`, ``python -m skyeye.evaluate``) call per
question; they differ only in what an `Asker` does to ask (a held-out tile vs a record with its
images, history and scene path) and in how the row's model answer is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from skyeye.evaluation.tasks import Question, Task, TileContext, get_baseline
from skyeye.evaluation.tasks.base import Row

#: How a row reads the model's reply: (reply, question, context) -> row columns.
Reader = Callable[[Any, Question, TileContext], Row]


class Asker:
    """One fresh conversation per question on a `ChatSession`; the blind model's answers (no
    image) are asked once per question: the greedy answer then depends on the question alone."""

    def __init__(self, session: Any) -> None:
        self.session = session
        # The blind baseline asks without an image on purpose: a session must not refuse it.
        self.session.require_image = False
        self._blind: dict[str, Any] = {}

    def ask(self, image: Any, question: str) -> Any:
        """The reply to ``question`` about ``image`` in a fresh conversation."""
        self.session.reset()
        self.session.add_image(image)
        return self.session.ask(question)

    def ask_blind(self, question: str) -> Any:
        """The same model (LLM + adapter) asked without the image: the blind baseline, i.e. how
        much of a score comes from the question alone."""
        if question not in self._blind:
            self.session.reset()
            self._blind[question] = self.session.ask(question)
        return self._blind[question]


def ask_question(
    task: Task,
    question: Question,
    ctx: TileContext,
    common: Row,
    *,
    read: Reader | None = None,
    baselines: Sequence[str] | None = None,
    by_name: bool = False,
) -> Row:
    """One row: the model's reply to ``question`` read by ``read`` (default `Task.read`), then
    the columns of each of ``baselines`` (default `Task.baselines`): in the row (the held-out
    rows) or, ``by_name``, under ``row["baselines"][name]`` (the record runner scores each
    baseline's answers apart)."""
    reply = ctx.asker.ask(ctx.image, question.prompt)
    row: Row = {**common, **question.fields, "question": question.prompt}
    if question.write_gold:
        row["gold"] = question.gold
    row["answer"] = reply.text
    row.update((read or task.read)(reply, question, ctx))
    named: dict[str, Row] = {}
    for name in task.baselines if baselines is None else baselines:
        columns = get_baseline(name)(task, question, ctx)
        named[name] = columns
        if not by_name:
            row.update(columns)
    if by_name:
        row["baselines"] = named
    row.update(question.after)
    return row
