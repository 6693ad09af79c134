"""Transfer validation on held-out *sources*: the raw LLM, the measured system and baselines in
one run (issue 29).

    python -m skyeye.evaluation.transfer --data OUT/heldout.jsonl --shared-data ../shared/data \
        [--model skyeye-tiny] [--limit 40] [--mcq-scoring likelihood|generate] --out REPORT.json

The records are those of `instruct_data.objects` (``meta.gen_task``: scene_mcq, presence, count,
refer). Per record the question is asked of three systems: ``measured`` (the chat as shipped:
multiple choice by option likelihood, counts and boxes on masks), ``raw`` (the LLM's own words:
``GenerationSettings(measure=False, mcq_scoring="generate")``) and ``blind`` (raw, without the
image); beside them the baselines that ask nothing: the most frequent reference answer of the
evaluated records, a seeded random letter (mcq) and a centred box (refer). Every answer is read
with the one parser of its kind (`skyeye.grounding.parse`); an answer it cannot read counts as
wrong and as unparseable.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from skyeye.atomic import atomic_open
from skyeye.errors import OptionsError, SkyEyeError
from skyeye.grounding.options import parse_options
from skyeye.grounding.parse import (
    GroundedBox,
    parse_boxes,
    parse_count,
    parse_letter,
    parse_yes_no,
    strip_grounding,
)

logger = logging.getLogger(__name__)

KINDS = ("scene_mcq", "presence", "count", "refer")
SYSTEMS = ("measured", "raw", "blind")


def _iou(a: GroundedBox, b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a.x2, b[2]) - max(a.x1, b[0]))
    iy = max(0.0, min(a.y2, b[3]) - max(a.y1, b[1]))
    inter = ix * iy
    union = a.width * a.height + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference(record: dict[str, Any]) -> Any:
    """The answer a record expects: a letter, 'yes'/'no', a count or a box (x1, y1, x2, y2)."""
    kind, meta = record["meta"]["gen_task"], record["meta"]
    if kind == "scene_mcq":
        return meta["answer"]
    if kind == "presence":
        return meta["answer"]
    if kind == "count":
        return int(meta["count"])
    return tuple(record["turns"][1]["boxes"][0]["xyxy"])


def read_answer(kind: str, text: str, boxes: list[GroundedBox], letters: str = "ABCD") -> Any:
    """The answer of ``kind`` in ``text`` (None when it cannot be read); ``letters``: those the
    multiple-choice question lists."""
    if kind == "scene_mcq":
        return parse_letter(text, letters)
    if kind == "presence":
        return parse_yes_no(text)
    if kind == "count":
        return parse_count(text)
    found = boxes or parse_boxes(text)
    return found[0] if found else None


def correct(kind: str, said: Any, ref: Any) -> dict[str, float]:
    """Per-record scores: ``acc`` (exact / IoU >= 0.5 for boxes) and ``within1`` for counts."""
    if said is None:
        return {"acc": 0.0, "within1": 0.0} if kind == "count" else {"acc": 0.0}
    if kind == "count":
        return {"acc": float(said == ref), "within1": float(abs(said - ref) <= 1)}
    if kind == "refer":
        return {"acc": float(_iou(said, ref) >= 0.5)}
    return {"acc": float(said == ref)}


def _prompt(record: dict[str, Any]) -> str:
    return record["turns"][0]["text"].replace("<image>\n", "").replace("<image>", "").strip()


def _image_path(record: dict[str, Any], shared: Path, out: Path) -> Path:
    root = out if record["meta"].get("image_root") == "out" else shared
    path = (root / record["images"][0]["path"]).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"{record['id']}: image path leaves its root {root}")
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    from skyeye.chat.session import GenerationSettings, load_chat

    data, shared = Path(args.data), Path(args.shared_data)
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]
    by_kind: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for rec in records:
        kind = rec.get("meta", {}).get("gen_task")
        if kind in by_kind and (not args.dataset or rec["meta"].get("dataset") in args.dataset):
            by_kind[kind].append(rec)
    rng = random.Random(args.seed)
    for kind in by_kind:  # a seeded sample, the same for every system
        rng.shuffle(by_kind[kind])
        by_kind[kind] = by_kind[kind][: args.limit] if kind in (args.kind or KINDS) else []
    base = GenerationSettings(max_new_tokens=args.max_new_tokens, mcq_scoring=args.mcq_scoring)
    settings = {
        "measured": base,
        "raw": replace(base, measure=False, mcq_scoring="generate"),
        "blind": replace(base, measure=False, mcq_scoring="generate"),
    }
    chat = load_chat(args.model, device=args.device)
    report: dict[str, Any] = {"settings": vars(args), "kinds": {}}
    for kind, recs in by_kind.items():
        if not recs:
            continue
        refs = [reference(r) for r in recs]
        scores: dict[str, list[dict[str, float]]] = {s: [] for s in SYSTEMS}
        unparsed: dict[str, Counter[str]] = {s: Counter() for s in SYSTEMS}
        answered: list[bool] = []  # the measured chat gave an answer of the kind (no refusal)
        rows = []
        for rec, ref in zip(recs, refs, strict=True):
            row = {"id": rec["id"], "dataset": rec["meta"].get("dataset"),
                   "reference": ref if kind != "refer" else list(ref)}  # fmt: skip
            letters = "".join(_letters(rec))
            for system in SYSTEMS:
                text, boxes = _ask(chat, rec, settings[system], system, shared, data.parent)
                said = read_answer(kind, text, boxes if system == "measured" else [], letters)
                if said is None:
                    unparsed[system][unparsed_reason(text)] += 1
                if system == "measured":
                    answered.append(said is not None)
                scores[system].append(correct(kind, said, ref))
                row[system] = text
            rows.append(row)
        block = _summarise(kind, recs, refs, scores, unparsed, answered, args.seed)
        block["rows"] = rows
        report["kinds"][kind] = block
        logger.info("%s: %s", kind, {k: v for k, v in block.items() if k != "rows"})
    return report


def _ask(
    chat: Any, rec: dict[str, Any], settings: Any, system: str, shared: Path, out: Path
) -> tuple[str, list[GroundedBox]]:
    """One fresh conversation: the record's question asked of ``system``; (text, measured boxes).
    A question the chat refuses (too long, an unreadable image) answers with its error line."""
    chat.reset()
    chat.settings = settings
    chat.require_image = system != "blind"
    try:
        if system != "blind":
            image = rec["images"][0]
            # What the record knows of its bands, as a user would give it (--sensor, band names):
            # without the names a 13-band EuroSAT patch is not read as Sentinel-2 reflectance.
            extra = {k: image[k] for k in ("wavelengths", "band_names") if image.get(k)}
            chat.add_image(str(_image_path(rec, shared, out)), **extra)
        reply = chat.ask(_prompt(rec))
    except (SkyEyeError, ValueError) as err:
        return f"error: {err}", []
    return reply.text, list(reply.boxes)


def unparsed_reason(text: str) -> str:
    """Why an answer could not be read, in its own words: the chat's refusal sentence (up to its
    colon: "I cannot count aircraft"), an error line, or the first words of free text."""
    head = strip_grounding(text).strip()
    if head.startswith("error:"):
        return head[:160]
    if head.lower().startswith("i cannot"):
        return head.split(":", 1)[0][:160]
    return "no answer of the asked kind in: " + (head[:60] or "(empty)")


def _summarise(
    kind: str,
    recs: list[dict[str, Any]],
    refs: list[Any],
    scores: dict[str, list[dict[str, float]]],
    unparsed: dict[str, Counter[str]],
    answered: list[bool],
    seed: int,
) -> dict[str, Any]:
    """One kind's block: every system and baseline on the same records, per dataset, and on
    the records the measured chat answered (``answered``: it says when it cannot tell, e.g. a
    class its decoder does not outline, and those count as wrong in the block itself)."""
    block: dict[str, Any] = {"n": len(recs)}
    for system in SYSTEMS:
        block[system] = _mean(scores[system])
        block[system]["parsed"] = round(1 - sum(unparsed[system].values()) / len(recs), 4)
        block[system]["unparsed_reasons"] = dict(unparsed[system].most_common())
    baselines: dict[str, list[dict[str, float]]] = {}
    majority = Counter(refs if kind != "refer" else []).most_common(1)
    if majority:
        baselines["majority"] = [correct(kind, majority[0][0], r) for r in refs]
    if kind == "scene_mcq":  # one of the letters each question lists, seeded
        letters = random.Random(seed)
        baselines["random_letter"] = [
            correct(kind, letters.choice(_letters(rec)), r)
            for rec, r in zip(recs, refs, strict=True)
        ]
    if kind == "refer":
        centre = GroundedBox(0.25, 0.25, 0.75, 0.75)
        baselines["centred_box"] = [correct(kind, centre, r) for r in refs]
    for name, items in baselines.items():
        block[name] = _mean(items)
    if majority:
        block["majority"]["answer"] = majority[0][0]
    columns = {**{s: scores[s] for s in SYSTEMS}, **baselines}

    def subset(keep: list[int]) -> dict[str, Any]:
        return {"n": len(keep)} | {
            name: _mean([items[i] for i in keep]) for name, items in columns.items()
        }

    if not all(answered):
        block["answered_by_measured"] = subset([i for i, a in enumerate(answered) if a])
    datasets = sorted({str(r["meta"].get("dataset")) for r in recs})
    if len(datasets) > 1:
        block["by_dataset"] = {
            ds: subset([i for i, r in enumerate(recs) if str(r["meta"].get("dataset")) == ds])
            for ds in datasets
        }
    return block


def _letters(rec: dict[str, Any]) -> list[str]:
    """The letters the record's question lists (A-D when it lists none readable)."""
    try:
        choice = parse_options(_prompt(rec))
    except OptionsError:
        choice = None
    return choice.letters if choice is not None else list("ABCD")


def _mean(items: list[dict[str, float]]) -> dict[str, Any]:
    keys = items[0].keys() if items else []
    return {k: round(sum(i[k] for i in items) / len(items), 4) for k in keys}


def card_tasks(report: dict[str, Any]) -> dict[str, Any]:
    """The report's headline numbers as a model-card report (`skyeye.hub.card.read_evaluation`:
    ``{"tasks": {...}}``): per kind, "held-out sources: KIND" on its datasets, the measured
    system's metrics first, then the raw LLM's, the blind model's and each baseline's, prefixed
    with its name (``raw_acc``, ``majority_acc``...), and the share of measured answers parsed."""
    tasks: dict[str, Any] = {}
    for kind, block in report["kinds"].items():
        datasets = sorted(block.get("by_dataset", {})) or sorted(
            {str(row["dataset"]) for row in block.get("rows", [])}
        )
        entry: dict[str, Any] = {"dataset": "held-out sources " + ", ".join(datasets)}
        entry["n"] = block["n"]
        for name in (*SYSTEMS, "majority", "random_letter", "centred_box"):
            for metric, value in block.get(name, {}).items():
                if isinstance(value, (int, float)) and metric not in ("parsed", "answer"):
                    entry[metric if name == "measured" else f"{name}_{metric}"] = value
        entry["measured_parsed"] = block["measured"]["parsed"]
        tasks[f"held-out sources: {kind}"] = entry
    return {"tasks": tasks}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m skyeye.evaluation.transfer", description=__doc__)
    p.add_argument("--data", required=True, help="heldout.jsonl of instruct_data.objects")
    p.add_argument("--shared-data", required=True, help="root of the scene sets' image paths")
    p.add_argument("--model", default="skyeye-tiny")
    p.add_argument("--out", required=True, help="report JSON")
    p.add_argument("--limit", type=int, default=40, help="records per question kind")
    p.add_argument("--dataset", action="append", default=[], help="only these datasets")
    p.add_argument("--kind", action="append", choices=KINDS, default=[], help="only these kinds")
    p.add_argument("--mcq-scoring", choices=["likelihood", "generate"], default="likelihood")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--card",
        default=None,
        help="also write the headline numbers as a model-card report (python -m skyeye.hub card "
        "--eval FILE)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not Path(args.data).is_file():
        print(
            f"error: --data {args.data}: no such file (run instruct_data.objects)", file=sys.stderr
        )
        return 2
    started = time.perf_counter()
    try:
        report = run(args)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["command"] = ["python", "-m", "skyeye.evaluation.transfer", *(argv or sys.argv[1:])]
    with atomic_open(Path(args.out), "w") as f:
        json.dump(report, f, indent=1)
    if args.card:
        with atomic_open(Path(args.card), "w") as f:
            json.dump(card_tasks(report), f, indent=1)
    for kind, block in report["kinds"].items():
        print(kind, json.dumps({k: v for k, v in block.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
