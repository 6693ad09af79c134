"""Training priors: the answers the trivial baselines give, counted in a ``from_rasters``
``train.jsonl`` with the same parsers the model's answers are read with."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from skyeye.constants import MCQ_LETTERS
from skyeye.evaluation.tasks.base import qa_pairs
from skyeye.grounding.parse import parse_percent, parse_yes_no


def _most_common(counter: Counter, default: Any) -> Any:
    return counter.most_common(1)[0][0] if counter else default


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
