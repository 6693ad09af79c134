"""Captions (BLEU-4, ROUGE-L, CIDEr-D), and the text-only check: the tuned model's answers to
held-out text prompts against the base LLM's own (ROUGE-L, exact match, grounding markup)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from skyeye.evaluation.caption_metrics import rouge_l
from skyeye.evaluation.scoring import Prediction, Scored, score_caption
from skyeye.evaluation.tasks.base import Task, register_task

#: Grounding markup that a text-only answer should never contain.
_GROUNDING = re.compile(r"<p>|</p>|\[SEG\]|\{<\d+>")


class CaptionTask(Task):
    name = "caption"
    answer_kind = "text"
    record_baselines = ("blind",)

    def score(self, preds: Sequence[Prediction]) -> Scored:
        return score_caption(preds)


def text_replay(asker: Any, prompts: list[str], base: list[str]) -> dict[str, Any]:
    """Held-out text-only prompts: the tuned model's answers against the base LLM's own."""
    rows = []
    for prompt, reference in zip(prompts, base, strict=True):
        answer = asker.ask_blind(prompt).text
        rows.append({"prompt": prompt, "base": reference, "answer": answer})
    return {
        "n": len(rows),
        "rouge_l_vs_base": float(
            rouge_l([r["answer"] for r in rows], [[r["base"]] for r in rows])["rouge_l"]
        )
        if rows
        else 0.0,
        "exact_match_base": float(np.mean([r["answer"].strip() == r["base"].strip() for r in rows]))
        if rows
        else 0.0,
        "answers_with_grounding_markup": int(
            sum(bool(_GROUNDING.search(r["answer"])) for r in rows)
        ),
        "base_with_grounding_markup": int(sum(bool(_GROUNDING.search(r["base"])) for r in rows)),
        "rows": rows,
    }


register_task(CaptionTask())
