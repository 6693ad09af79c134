"""`python -m skyeye.evaluate --task change`: the chat's change answers on held-out change records
(``python -m instruct_data.change``'s val.jsonl), each beside its baselines in one run.

Every record is asked as a user asks it: a fresh conversation, both images added with the
record's dates (`prepare_dated_images`, the chat's rule), the record's question word for word
(`ChatSession.ask`: a change question gets the measured change answer,
`skyeye.chat.change_answer`). Four kinds of record, by their id's suffix:

* ``what`` (the whole change: "Compare the two images: what is different?"): the change mask
  against the record's, gIoU / cIoU / F1 of the changed class per dataset (`change_scores`),
  beside every `CHANGE_BASELINES` rule on the same pair (Otsu on the image difference, the
  index rules where the bands allow); and the answer's sentence against the reference sentence
  (BLEU-4, ROUGE-L, CIDEr-D), beside the blind model's;
* ``any`` ("Has anything changed? Answer yes or no."): yes/no accuracy beside the most frequent
  answer of the evaluated records and the blind model;
* ``much`` / ``much-<class>`` ("How much ... in hectares?"): the share of answers within 25 %
  of the reference area and the median relative error, beside the median reference area of the
  evaluated records and the blind model;
* ``show`` (``appeared-<class>`` / ``disappeared-<class>``: "Show where buildings appeared."):
  the change mask against the record's, per dataset and change phrase ("new buildings"), beside
  the same baselines. Only records whose question the chat reads as their own phrase are asked
  (`read_change_question`: the classes it names, water, vegetation, built-up, bare land); the
  rest are skipped and counted ("class the chat does not name"). OSCD labels urban change only,
  so its ``show`` records ask what it labels, where ``what`` asks for every change.

The blind model is the same model asked the same question with no image (greedy: its answer
depends on the question alone); it draws no mask, so ``show`` records do not ask it. A record
whose images or mask cannot be read, or whose question the chat refuses, is skipped and counted
by reason; an answer without a change mask or a readable figure counts as wrong and as
unparsed, with its reason.
"""

from __future__ import annotations

import logging
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from skyeye.chat.change_answer import read_change_question
from skyeye.chat.multi_date import prepare_dated_images, uncut_mask
from skyeye.chat.readable import render_readable
from skyeye.errors import SkyEyeError
from skyeye.evaluation.caption_metrics import caption_metrics
from skyeye.evaluation.change_baselines import CHANGE_BASELINES, change_scores
from skyeye.evaluation.change_heldout import iter_change_pairs
from skyeye.grounding.parse import parse_area_m2, parse_seg_phrases, parse_yes_no
from skyeye.io.resample import resize_mask

logger = logging.getLogger(__name__)

__all__ = ["CHANGE_KINDS", "change_kind", "evaluate_change"]

#: Record kinds asked, by the id suffix `instruct_data.change` writes.
CHANGE_KINDS = ("what", "any", "much", "show")
#: An area answer is right within this relative error.
AREA_TOLERANCE = 0.25
_IMAGE_PART = re.compile(r"(Image \d+ \([^)]*\):\s*)?<image>\s*")


def change_kind(record_id: str) -> str | None:
    """The kind of a change record from its id (``...:what``, ``...:much-buildings``,
    ``...:appeared-water`` -> "show"), or None for an id of no evaluated kind."""
    suffix = record_id.rsplit(":", 1)[-1]
    kind, _, cls = suffix.partition("-")
    if kind in ("appeared", "disappeared"):
        return "show" if cls else None
    return kind if kind in CHANGE_KINDS and (kind == "much" or suffix == kind) else None


def _mask_scores(masks: dict[str, Any]) -> dict[str, Any]:
    """gIoU / cIoU / F1 of the model and every baseline per group (``masks["group"]``: dataset,
    or dataset and phrase) of the collected masks."""
    out: dict[str, Any] = {}
    group_of = masks["group"]
    for group in sorted(set(group_of)):
        idx = [i for i, g in enumerate(group_of) if g == group]
        targets = [masks["target"][i] for i in idx]
        valids = [masks["valid"][i] for i in idx]
        scores: dict[str, Any] = {"records": len(idx)}
        for name, preds in masks["pred"].items():
            scores[name] = change_scores([preds[i] for i in idx], targets, valids)
        out[group] = scores
    return out


def _chat_asks_its_phrase(record: dict) -> bool | None:
    """Whether the chat reads a ``show`` record's question as the record's own phrase (its
    answer's first `[SEG]` phrase); None when the turns cannot be read (counted later)."""
    try:
        question = question_text(record["turns"][0]["text"])
        phrases = parse_seg_phrases(str(record["turns"][1]["text"]))
    except (KeyError, IndexError, TypeError):
        return None
    asked = read_change_question(question)
    return bool(phrases) and asked is not None and asked.phrase == phrases[0]


def question_text(user_text: str) -> str:
    """The record's question without its image parts ("Image 1 (2015-09-16): <image>\\n"):
    the chat names the dated images itself."""
    return _IMAGE_PART.sub("", user_text).strip()


def _blind(session: Any, question: str) -> str:
    session.reset()
    return session.ask(question).text


def _relative_error(pred: float | None, gold: float) -> float | None:
    if pred is None:
        return None
    return abs(pred - gold) / gold if gold > 0 else (0.0 if pred == 0 else float("inf"))


def _summaries(
    rows: dict[str, list[dict[str, Any]]], masks: dict, shown: dict, captions: dict
) -> dict:
    out: dict[str, Any] = {}
    if shown["target"]:
        out["show"] = _mask_scores(shown)
    if masks["target"]:
        out["what"] = _mask_scores(masks)
        refs = [[r] for r in captions["reference"]]
        out["what_caption"] = {
            "model": caption_metrics(captions["model"], refs),
            "blind": caption_metrics(captions["blind"], refs),
        }
    if rows.get("any"):
        golds = [r["gold"] for r in rows["any"]]
        majority = Counter(golds).most_common(1)[0][0]
        out["any"] = {
            "records": len(golds),
            "model": float(np.mean([r["model"] == r["gold"] for r in rows["any"]])),
            "blind": float(np.mean([r["blind"] == r["gold"] for r in rows["any"]])),
            "most_frequent": float(np.mean([g == majority for g in golds])),
            "most_frequent_answer": majority,
        }
    if rows.get("much"):
        golds = [r["gold_m2"] for r in rows["much"]]
        median = float(statistics.median(golds))
        block: dict[str, Any] = {"records": len(golds), "median_reference_m2": median}
        for name in ("model", "blind", "median_reference"):
            preds = [median if name == "median_reference" else r[name] for r in rows["much"]]
            errors = [_relative_error(p, g) for p, g in zip(preds, golds, strict=True)]
            known = [e for e in errors if e is not None]
            right = [e is not None and e <= AREA_TOLERANCE for e in errors]
            block[name] = {
                "within_25pct": float(np.mean(right)),
                "median_relative_error": float(statistics.median(known)) if known else None,
                "unparsed": len(errors) - len(known),
            }
        out["much"] = block
    return out


def evaluate_change(
    session: Any,
    blind: Any,
    jsonl: Path,
    root: Path,
    limit: int | None = None,
    kinds: tuple[str, ...] = CHANGE_KINDS,
) -> dict[str, Any]:
    """The change report of ``jsonl`` (image paths under ``root``): at most ``limit`` records
    of each kind, in file order. ``session`` and ``blind`` are `ChatSession`s of one model
    (``blind`` is asked without images). Returns {"metrics": per kind, "rows": per kind,
    "skipped": {reason: n}, "unparsed": {reason: n}}."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    masks: dict[str, Any] = {"pred": defaultdict(list), "target": [], "valid": [], "group": []}
    shown: dict[str, Any] = {"pred": defaultdict(list), "target": [], "valid": [], "group": []}
    captions: dict[str, list[str]] = defaultdict(list)
    skipped: Counter = Counter()
    unparsed: Counter = Counter()

    def wanted(record: dict) -> bool:
        kind = change_kind(str(record.get("id", "")))
        if kind is None or kind not in kinds or (limit and len(rows[kind]) >= limit):
            return False
        # Checked before the images are read: a class the chat does not name would be asked as
        # "what changed?" and scored against one class's mask.
        if kind == "show" and _chat_asks_its_phrase(record) is False:
            skipped["class the chat does not name"] += 1
            return False
        return True

    pairs = iter_change_pairs(jsonl, root, wanted, skipped, desc="change records")
    for record, before, after, target in pairs:
        kind = change_kind(str(record["id"]))
        assert kind is not None  # `wanted` took only these
        try:
            question = question_text(record["turns"][0]["text"])
            gold_text = record["turns"][1]["text"]
        except (KeyError, IndexError, TypeError):
            skipped["unreadable record"] += 1
            continue
        meta = record.get("meta") or {}
        dates = meta.get("dates") or None
        phrase = parse_seg_phrases(gold_text)[0] if kind == "show" else None
        try:
            session.reset()
            for image in prepare_dated_images([before, after], dates).images:
                session.add_image(image)
            reply = session.ask(question)
        except (SkyEyeError, ValueError) as err:
            skipped[f"refused: {type(err).__name__}"] += 1
            continue
        change = reply.change
        if change is None:
            unparsed["no change answer"] += 1
        row: dict[str, Any] = {"id": record["id"], "dataset": meta.get("dataset")}
        if kind in ("what", "show"):
            pred = np.zeros(target.shape, bool)
            if change is not None:  # bool on the before image's read grid (cut to the overlap)
                drawn = uncut_mask(np.asarray(reply.masks[change.mask], bool), session.images[0])
                pred = resize_mask(drawn, target.shape)
            into = masks if kind == "what" else shown
            into["pred"]["model"].append(pred)
            for name, rule in CHANGE_BASELINES.items():
                into["pred"][name].append(rule(before, after))
            into["target"].append(target)
            into["valid"].append(before.valid_mask & after.valid_mask)
            into["group"].append(
                row["dataset"] if kind == "what" else f"{row['dataset']}: {phrase}"
            )
        if kind == "show":
            row["answer"] = render_readable(reply.text)
            rows[kind].append(row)
            continue
        blind_text = _blind(blind, question)
        if kind == "what":
            captions["model"].append(render_readable(reply.text))
            captions["blind"].append(render_readable(blind_text))
            captions["reference"].append(render_readable(gold_text))
        elif kind == "any":
            row["gold"] = parse_yes_no(gold_text)
            row["model"] = None if change is None else ("yes" if change.changed else "no")
            row["blind"] = parse_yes_no(blind_text)
        else:
            gold_m2 = parse_area_m2(gold_text)
            if gold_m2 is None:
                skipped["no reference area"] += 1
                continue
            row["gold_m2"] = gold_m2
            row["model"] = None if change is None else change.area.m2
            row["blind"] = parse_area_m2(blind_text)
        row["answer"], row["blind_answer"] = render_readable(reply.text), blind_text
        rows[kind].append(row)
    return {
        "metrics": _summaries(rows, masks, shown, captions) or None,
        "rows": dict(rows),
        "skipped": dict(skipped),
        "unparsed": dict(unparsed),
    }
