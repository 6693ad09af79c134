"""Priors: the answers the majority baselines give, counted with the same parsers the model's
answers are read with: in a ``from_rasters`` ``train.jsonl`` (`training_priors`, the held-out
driver) or in the evaluated records themselves (`record_priors`, the record runner)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skyeye.constants import MCQ_LETTERS
from skyeye.evaluation.metrics import normalize_vqa_answer
from skyeye.evaluation.samples import EvalSample
from skyeye.evaluation.tasks.base import qa_pairs
from skyeye.grounding.parse import parse_percent, parse_yes_no, strip_grounding


def _most_common(counter: Counter, default: Any) -> Any:
    return counter.most_common(1)[0][0] if counter else default


def record_priors(samples: Sequence[EvalSample]) -> dict[str, Any]:
    """The majority answers of the evaluated records (a file without a training split): the
    most frequent correct letter, yes/no and other answer (as `score_vqa` reads the
    references). Counted on the records scored, so an optimistic baseline; ties go to the
    answer first seen."""
    letters: Counter = Counter(s.answer_letter for s in samples if s.answer_letter)
    yes_no: Counter = Counter()
    answers: Counter = Counter()
    for sample in samples:
        if (yn := parse_yes_no(sample.reference)) is not None:
            yes_no[yn] += 1
        else:
            answers[normalize_vqa_answer(strip_grounding(sample.reference))] += 1
    return {
        "mcq_letter": _most_common(letters, MCQ_LETTERS[0]),
        "vqa_yes_no": _most_common(yes_no, "yes"),
        "vqa_answer": _most_common(answers, ""),
    }


def training_priors(train: str | Path) -> dict[str, Any]:
    """The trivial baselines, from ``train``: majority presence answer and most frequent
    proportion / count per class, the most frequent correct letter, the median box per class."""
    presence: dict[str, Counter] = defaultdict(Counter)
    proportion: dict[str, Counter] = defaultdict(Counter)
    count: dict[str, Counter] = defaultdict(Counter)
    letters: Counter = Counter()
    boxes: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    with open(train, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            meta = rec["meta"]
            task = meta.get("gen_task")
            if task == "presence":
                for (_, answer), item in zip(qa_pairs(rec), meta.get("answers", []), strict=False):
                    if (yn := parse_yes_no(answer)) is not None:
                        presence[item["class"]][yn] += 1
            elif task == "proportion":
                value = parse_percent(rec["turns"][-1]["text"])
                if value is not None:
                    proportion[meta["classes"][0]][value] += 1
            elif task == "count":
                count[meta["classes"][0]][int(meta["count"])] += 1
            elif task == "mcq":
                letters[meta["answer"]] += 1
            elif task == "refer":
                for box in rec["turns"][-1].get("boxes") or []:
                    boxes[meta["classes"][0]].append(tuple(box["xyxy"]))
    overall = sum(presence.values(), Counter())
    all_boxes = [b for bs in boxes.values() for b in bs]
    return {
        "presence": {c: _most_common(n, "yes") for c, n in presence.items()},
        "presence_overall": _most_common(overall, "yes"),
        "proportion": {c: _most_common(n, 10.0) for c, n in proportion.items()},
        "proportion_overall": _most_common(sum(proportion.values(), Counter()), 10.0),
        "count": {c: _most_common(n, 1) for c, n in count.items()},
        "count_overall": _most_common(sum(count.values(), Counter()), 1),
        "mcq_letter": _most_common(letters, MCQ_LETTERS[0]),
        "box": {c: [float(v) for v in np.median(np.array(bs), axis=0)] for c, bs in boxes.items()},
        "box_overall": [float(v) for v in np.median(np.array(all_boxes), axis=0)]
        if all_boxes
        else [0.0, 0.0, 1.0, 1.0],
    }
