"""The metric block of questions with one exact answer (a letter, a count)."""

from __future__ import annotations

from typing import Any

import numpy as np

from skyeye.evaluation.tasks.base import Row


def summarise_choice(rows: list[Row]) -> dict[str, Any]:
    """Accuracy of exact answers vs the blind model, the baseline and (multiple choice) a
    random option letter; counts add within +-1."""
    out: dict[str, Any] = {
        "n": len(rows),
        "accuracy": float(np.mean([r["pred"] == r["gold"] for r in rows])),
        "blind_accuracy": float(np.mean([r["blind"] == r["gold"] for r in rows])),
        "baseline_accuracy": float(np.mean([r["baseline"] == r["gold"] for r in rows])),
    }
    if rows and "random_letter" in rows[0]:
        out["random_letter_accuracy"] = float(
            np.mean([r["random_letter"] == r["gold"] for r in rows])
        )
    out["unparseable"] = int(sum(r["pred"] is None for r in rows))
    if rows and isinstance(rows[0]["gold"], int):

        def near(key: str) -> float:
            return float(
                np.mean([r[key] is not None and abs(r[key] - r["gold"]) <= 1 for r in rows])
            )

        out.update(
            within_1=near("pred"), blind_within_1=near("blind"), baseline_within_1=near("baseline")
        )
    return out
