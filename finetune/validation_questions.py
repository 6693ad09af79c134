"""Question kinds of `finetune.validate_skyeye_tiny`: answer parsers, training priors (the trivial
baselines), and the multiple-choice, counting, box and text-only checks.

Every number here stands beside a baseline computed in the same run: the most frequent answer in
``train.jsonl`` (per class where a class is asked about), the blind model (the same weights asked
without the image) and, for text-only prompts, the base LLM's own answers.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from skyeye.constants import MCQ_LETTERS
from skyeye.evaluation.caption_metrics import rouge_l
from skyeye.evaluation.metrics import box_iou
from skyeye.grounding.parse import GroundedBox, parse_boxes

_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_LEADING_MASK = re.compile(r"^\s*(?:<p>.*?</p>\s*)?(?:\[SEG\])?[\s.:,;-]*", re.DOTALL)
_LETTER = re.compile(rf"^\W*\(?([{MCQ_LETTERS}])\b")
_NUMBER = re.compile(r"^\D*?(\d+)\b")
#: Grounding markup that a text-only answer should never contain.
_GROUNDING = re.compile(r"<p>|</p>|\[SEG\]|\{<\d+>")


def strip_leading_mask(text: str) -> str:
    """'<p>water</p> [SEG] Yes.' -> 'Yes.' (an answer that looks before it answers)."""
    return _LEADING_MASK.sub("", text, count=1)


def parse_yes_no(text: str) -> str | None:
    """'yes' / 'no' from the first word of an answer (after a leading mask), else None."""
    word = re.match(r"\W*(\w+)", strip_leading_mask(text).lower())
    return word.group(1) if word and word.group(1) in ("yes", "no") else None


def parse_percent(text: str) -> float | None:
    """The share (0..100) an answer states; 'less than 1%' -> 0.5; None when there is none."""
    low = text.lower()
    if "less than 1%" in low:
        return 0.5
    found = _PERCENT.search(low)
    return float(found.group(1)) if found else None


def parse_letter(text: str) -> str | None:
    """The option letter an answer starts with ('B', 'B.', '(B) water'), else None."""
    found = _LETTER.match(text.strip())
    return found.group(1) if found else None


def parse_count(text: str) -> int | None:
    """The first whole number of an answer ('3', 'There are 3.'), else None."""
    found = _NUMBER.match(strip_leading_mask(text))
    return int(found.group(1)) if found else None


def qa_pairs(record: dict) -> list[tuple[str, str]]:
    turns = record["turns"]
    return [
        (turns[i]["text"].replace("<image>", "").strip(), turns[i + 1]["text"])
        for i in range(0, len(turns) - 1, 2)
    ]


def _most_common(counter: Counter, default: Any) -> Any:
    return counter.most_common(1)[0][0] if counter else default


def training_priors(train: Path) -> dict[str, Any]:
    """The trivial baselines, from ``train``: majority presence answer and most frequent
    proportion / count per class, the most frequent correct letter, the median box per class."""
    presence: dict[str, Counter] = defaultdict(Counter)
    proportion: dict[str, Counter] = defaultdict(Counter)
    count: dict[str, Counter] = defaultdict(Counter)
    letters: Counter = Counter()
    boxes: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    for line in open(train, encoding="utf-8"):
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


def ask_mcq(asker: Any, image: Any, rec: dict, priors: dict[str, Any]) -> dict[str, Any]:
    """One multiple-choice question: the model's letter, the blind model's and the majority's."""
    (question, _), meta = qa_pairs(rec)[0], rec["meta"]
    reply = asker.ask(image, question)
    blind = asker.ask_blind(question)
    return {
        "question": question,
        "gold": meta["answer"],
        "answer": reply.text,
        "pred": parse_letter(reply.text),
        "blind": parse_letter(blind.text),
        "baseline": priors["mcq_letter"],
    }


def ask_count(asker: Any, image: Any, rec: dict, priors: dict[str, Any]) -> dict[str, Any]:
    """One counting question: the model's number, the blind model's and the most frequent."""
    (question, _), meta = qa_pairs(rec)[0], rec["meta"]
    cls = meta["classes"][0]
    reply = asker.ask(image, question)
    blind = asker.ask_blind(question)
    return {
        "class": cls,
        "question": question,
        "gold": int(meta["count"]),
        "answer": reply.text,
        "pred": parse_count(reply.text),
        "blind": parse_count(blind.text),
        "baseline": priors["count"].get(cls, priors["count_overall"]),
    }


def ask_refer(asker: Any, image: Any, rec: dict, priors: dict[str, Any]) -> dict[str, Any]:
    """One box question: IoU of the model's first box and of the class's median training box."""
    (question, _), meta = qa_pairs(rec)[0], rec["meta"]
    cls = meta["classes"][0]
    gold = GroundedBox(*rec["turns"][-1]["boxes"][0]["xyxy"])
    reply = asker.ask(image, question)
    boxes = parse_boxes(reply.text)
    base = GroundedBox(*priors["box"].get(cls, priors["box_overall"]))
    return {
        "class": cls,
        "question": question,
        "answer": reply.text,
        "has_box": bool(boxes),
        "iou": box_iou(boxes[0], gold) if boxes else 0.0,
        "baseline_iou": box_iou(base, gold),
        "box": None if not boxes else [boxes[0].x1, boxes[0].y1, boxes[0].x2, boxes[0].y2],
    }


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


def summarise_choice(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of exact answers (letters, counts) vs the blind model and the baseline."""
    out: dict[str, Any] = {
        "n": len(rows),
        "accuracy": float(np.mean([r["pred"] == r["gold"] for r in rows])),
        "blind_accuracy": float(np.mean([r["blind"] == r["gold"] for r in rows])),
        "baseline_accuracy": float(np.mean([r["baseline"] == r["gold"] for r in rows])),
        "unparseable": int(sum(r["pred"] is None for r in rows)),
    }
    if rows and isinstance(rows[0]["gold"], int):

        def near(key: str) -> float:
            return float(
                np.mean([r[key] is not None and abs(r[key] - r["gold"]) <= 1 for r in rows])
            )

        out.update(
            within_1=near("pred"), blind_within_1=near("blind"), baseline_within_1=near("baseline")
        )
    return out


def summarise_refer(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Box Acc@0.5 (IoU strictly > 0.5, unparseable = miss) and mean IoU vs the median box."""
    return {
        "n": len(rows),
        "acc_at_0_5": float(np.mean([r["iou"] > 0.5 for r in rows])),
        "baseline_median_box_acc_at_0_5": float(np.mean([r["baseline_iou"] > 0.5 for r in rows])),
        "mean_iou": float(np.mean([r["iou"] for r in rows])),
        "baseline_median_box_mean_iou": float(np.mean([r["baseline_iou"] for r in rows])),
        "distinct_boxes": len({tuple(r["box"]) for r in rows if r["box"] is not None}),
    }


def answer_shapes(rows: dict[str, Any]) -> dict[str, float]:
    """Share of answers in the shape the question asks for, per question type (flat, as model
    cards read it: ``letter_in_shape``, ``letter_n``, ...): letter (mcq), yes_no (presence: the
    answer, after its mask, starts with yes or no), number (proportion: it states a share; count:
    it starts with a whole number), box (refer: it has a box), mask (segmentation: it has a
    mask)."""
    kinds = {
        "letter": [r["pred"] is not None for r in rows.get("mcq", [])],
        "yes_no": [r["pred"] is not None for r in rows.get("presence", [])],
        "number": [r["pred"] is not None for r in rows.get("proportion", [])]
        + [r["pred"] is not None for r in rows.get("count", [])],
        "box": [r["has_box"] for r in rows.get("refer", [])],
        "mask": [r["has_seg"] for r in rows.get("water", [])],
    }
    out: dict[str, float] = {}
    for kind, ok in kinds.items():
        if ok:
            out[f"{kind}_in_shape"] = float(np.mean(ok))
            out[f"{kind}_n"] = len(ok)
    return out


__all__ = [
    "answer_shapes",
    "ask_count",
    "ask_mcq",
    "ask_refer",
    "parse_count",
    "parse_letter",
    "parse_percent",
    "parse_yes_no",
    "qa_pairs",
    "strip_leading_mask",
    "summarise_choice",
    "summarise_refer",
    "text_replay",
    "training_priors",
]
