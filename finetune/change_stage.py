"""`python -m finetune.change_stage`: the change decoder trained on cached change `[SEG]` states.

    python -m finetune.change_stage --model runs/skyeye-tiny/mask/model \
        --data runs/skyeye-tiny/change_data/train.jsonl --val runs/skyeye-tiny/change_data/val.jsonl \
        --out runs/skyeye-tiny/change/model

The model gains a change decoder (``config.mask_change``; `skyeye.modeling.mask_decoders.change`)
that starts from its mask head's weights; the LLM, LoRA, tower, projector and mask head are
frozen and unchanged. The change records (`python -m instruct_data.change`: two dated images, the
change mask as the answer's `[SEG]`) are read once into cached states (`finetune.change_cache`,
kept beside the output as ``change_cache.pt`` for a resumed run) and the decoder alone is trained
on them (`finetune.change_train`), resumable from ``checkpoints/``. With ``--val``, the held-out
pairs' whole-change records are scored (gIoU / cIoU / F1) beside the Otsu and index-difference
baselines on the same records (`skyeye.evaluation.change_heldout`), in ``change_stage_log.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any

import torch

from finetune.args import not_positive
from finetune.change_cache import (
    cache_change_states,
    change_record_lines,
    lines_fingerprint,
    to_change,
)
from finetune.change_train import ChangeTrainConfig, score_cached, train_change_head
from finetune.state import CheckpointManager
from skyeye.atomic import atomic_path, write_text
from skyeye.errors import CheckpointError

logger = logging.getLogger(__name__)


def _dataset(lines: list[str], path: Path, root: Path, processor: Any, model: Any) -> Any:
    from skyeye.chat.session import DEFAULT_SYSTEM_PROMPT
    from skyeye.data.dataset import InstructionDataset

    write_text(path, "".join(lines))
    return InstructionDataset(
        path,
        processor,
        image_root=root,
        mask_size=model.config.vision_config.image_size,
        system_prompt=DEFAULT_SYSTEM_PROMPT,
    )


def cached_states(
    lines: list[str], root: Path, work: Path, name: str, model: Any, processor: Any, key: str
) -> dict[str, Any]:
    """The cached states of ``lines`` (``work/<name>.pt``, reused when its fingerprint is the
    same records and settings ``key``)."""
    path = work / f"{name}.pt"
    fingerprint = lines_fingerprint(lines, key)
    if path.is_file():
        cache = torch.load(path, weights_only=True)
        if cache.get("fingerprint") == fingerprint:
            logger.info("reusing %s", path)
            return dict(cache)
    dataset = _dataset(lines, work / f"{name}_records.jsonl", root, processor, model)
    cache = cache_change_states(model, dataset)
    cache["fingerprint"] = fingerprint
    with atomic_path(path) as tmp:
        torch.save(cache, tmp)
    return cache


def sample_records(
    lines: list[str], n: int, large_share: float, large_px: int, seed: int
) -> list[str]:
    """A seeded sample of ``n`` record lines, ``large_share`` of them (as many as there are)
    from the records whose first image is at least ``large_px`` a side; file order kept."""
    rng = random.Random(seed)
    if large_share <= 0:
        return [lines[i] for i in sorted(rng.sample(range(len(lines)), n))]
    large = [i for i, line in enumerate(lines) if min(_size(line)) >= large_px]
    chosen = set(large)
    small = [i for i in range(len(lines)) if i not in chosen]
    k = min(len(large), round(n * large_share))
    picked = rng.sample(large, k) + rng.sample(small, min(len(small), n - k))
    return [lines[i] for i in sorted(picked)]


def _size(line: str) -> list[int]:
    size = json.loads(line)["images"][0].get("size") or [0, 0]
    return [int(v) for v in size]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m finetune.change_stage", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model", required=True, help="model folder (the mask stage's output)")
    p.add_argument("--data", type=Path, required=True, help="change records (train.jsonl)")
    p.add_argument("--val", type=Path, default=None, help="held-out change records (val.jsonl)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--bce-weight", type=float, default=2.0, help="weight of the BCE mask loss (DESIGN: 2.0)"
    )
    p.add_argument(
        "--dice-weight",
        type=float,
        default=0.5,
        help="weight of the dice mask loss (DESIGN: 0.5; change is sparse, and a higher weight "
        "trades precision for recall)",
    )
    p.add_argument("--save-every", type=int, default=50, help="steps between checkpoints; 0: none")
    p.add_argument("--save-dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument(
        "--whole-change-from",
        default=None,
        help="comma-separated record sources whose whole-change records (the chat's 'changed "
        "land cover': what / any / much) are trained on; the other sources give their per-class "
        "records only (OSCD marks urban change alone, so its whole-change masks call a new lake "
        "no change). Default: every source",
    )
    p.add_argument(
        "--max-records",
        type=int,
        default=0,
        help="cache at most this many change records (a seeded sample; 0 = all): each costs one "
        "LLM forward",
    )
    p.add_argument(
        "--large-share",
        type=float,
        default=0.0,
        help="share of --max-records drawn from the records whose images are at least "
        "--large-px a side (change at the whole-scene window's scale, which small tiles do not "
        "teach; 0 = one uniform sample)",
    )
    p.add_argument("--large-px", type=int, default=320, help="see --large-share")
    p.add_argument(
        "--hires-size",
        type=int,
        default=256,
        help="longest side of the full-resolution pixels and targets, when the model's "
        "processor has none (a 'light' mask head)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    error = not_positive(args, ("steps", "batch_size", "hires_size"))
    if error:
        print(error, file=sys.stderr)
        return 2
    for path in (args.data, args.val):
        if path is not None and not path.is_file():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("skyeye.io").setLevel(logging.WARNING)
    from skyeye.modeling.model import SkyEyeForConditionalGeneration
    from skyeye.processing.processor import SkyEyeProcessor

    sources = None
    if args.whole_change_from is not None:
        sources = frozenset(s.strip() for s in args.whole_change_from.split(",") if s.strip())
    lines = change_record_lines(args.data, whole_change_sources=sources)
    if not lines:
        print(
            f"error: {args.data} holds no change record (two images, a [SEG] of a change phrase)",
            file=sys.stderr,
        )
        return 2
    if 0 < args.max_records < len(lines):
        lines = sample_records(lines, args.max_records, args.large_share, args.large_px, args.seed)
    model = SkyEyeForConditionalGeneration.from_pretrained(args.model)
    processor = SkyEyeProcessor.from_pretrained(args.model)
    if processor.image_processor.hires_size is None:
        processor.image_processor.hires_size = args.hires_size
    if model.change_head is None:
        # The new layers are drawn from torch's global generator: seeded, every run (and every
        # resumed run) starts from the same decoder.
        torch.manual_seed(args.seed)
        to_change(model)
    model.requires_grad_(False)
    work = args.out.parent
    work.mkdir(parents=True, exist_ok=True)
    key = f"{Path(args.model).resolve()}|{processor.image_processor.hires_size}"
    cache = cached_states(lines, args.data.parent, work, "change_cache", model, processor, key)
    n = int(cache["hidden"].shape[0])
    logger.info("%d change [SEG] states cached from %d records", n, len(lines))
    cfg = ChangeTrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        bce_weight=args.bce_weight,
        dice_weight=args.dice_weight,
        save_every=args.save_every,
    )
    checkpoints = CheckpointManager(work / "checkpoints")
    try:
        log = train_change_head(model, cache, cfg, checkpoints, run_key=cache["fingerprint"])
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "masks": n}
    report["log"] = log
    if args.val is not None:
        report["val"] = validate(args.val, work, model, processor, key)
    dtype = torch.bfloat16 if args.save_dtype == "bfloat16" else None
    model.save_pretrained(args.out, processor=processor, dtype=dtype)
    write_text(work / "change_stage_log.json", json.dumps(report, indent=1) + "\n")
    if report.get("val", {}).get("n"):
        card_report = card_evaluation(report["val"])
        write_text(work / "change_evaluation.json", json.dumps(card_report, indent=1) + "\n")
    logger.info("wrote %s", args.out)
    return 0


def validate(val: Path, work: Path, model: Any, processor: Any, key: str) -> dict[str, Any]:
    """The decoder and the baselines on the held-out pairs' whole-change records."""
    from skyeye.evaluation.change_heldout import score_change_records

    lines = change_record_lines(val, whole_change_only=True)
    if not lines:
        return {"n": 0}
    cache = cached_states(lines, val.parent, work, "change_val_cache", model, processor, key)
    write_text(work / "change_val_records.jsonl", "".join(lines))
    baselines = score_change_records(work / "change_val_records.jsonl", val.parent)
    datasets = [json.loads(line).get("meta", {}).get("dataset", "?") for line in lines]
    by_dataset: dict[str, list[int]] = {}
    for k, record in enumerate(cache["records"]):
        by_dataset.setdefault(str(datasets[record]), []).append(k)
    decoder = {
        name: score_cached(model, _subset(cache, members)) for name, members in by_dataset.items()
    }
    return {"n": len(lines), "change_decoder": decoder, "baselines": baselines["datasets"]}


def card_evaluation(val: dict[str, Any]) -> dict[str, Any]:
    """`validate`'s scores as an evaluation report the model card reads
    (`skyeye.hub.card.read_evaluation`): one task per held-out change set, the decoder's gIoU /
    cIoU / F1 / precision / recall beside each baseline's gIoU and cIoU on the same pairs."""
    tasks: dict[str, Any] = {}
    for name, scores in val.get("change_decoder", {}).items():
        metrics = {k: scores[k] for k in ("giou", "ciou", "f1", "precision", "recall")}
        for base, b in val.get("baselines", {}).get(name, {}).items():
            if b.get("missing", 0) == b.get("n"):
                continue  # the rule needs bands this set lacks (an index on RGB pairs)
            metrics[f"baseline_{base}_giou"] = b["giou"]
            metrics[f"baseline_{base}_ciou"] = b["ciou"]
        tasks[f"change ({name})"] = {
            "dataset": f"held-out change pairs of {name} (instruct_data/change/splits.yaml)",
            "n": scores["n"],
            "metrics": metrics,
        }
    return {"tasks": tasks}


def _subset(cache: dict[str, Any], members: list[int]) -> dict[str, Any]:
    """The cached pairs ``members`` (tensors indexed, lists picked)."""
    out: dict[str, Any] = {}
    for key, value in cache.items():
        if isinstance(value, torch.Tensor):
            out[key] = value[members]
        elif isinstance(value, list):
            out[key] = [value[i] for i in members]
    return out


if __name__ == "__main__":
    sys.exit(main())
