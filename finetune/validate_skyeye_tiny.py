"""`python -m finetune.validate_skyeye_tiny`: held-out numbers of a skyeye-tiny model vs baselines.

Everything is asked through `skyeye.ChatSession` (what a user gets), one fresh conversation per
question, on the held-out tiles written by `instruct_data.from_rasters` (`val.jsonl`):

- presence (yes/no per class): accuracy vs the majority answer of that class in `train.jsonl`
  and vs the blind model (the same weights asked without the image);
- multiple choice (letter) and counting (a number) vs the most frequent answer and the blind
  model; boxes (Acc@0.5) vs the class's median training box; the share of answers in the asked
  shape per question type (`finetune.validation_questions`);
- text-only prompts held out of the replay file: the tuned model's answers vs the base LLM's;
- proportion ("about N%"): agreement (|predicted - label| <= 10 points, and same 5-point bin) and
  mean absolute error vs the most frequent answer of that class in training;
- water masks: per-sample IoU (gIoU) and cIoU of the `[SEG]` mask vs the tile's water mask, and
  the NDWI > 0 and MNDWI > 0 baselines (green + NIR / SWIR1) on the same tiles, also per label
  source (hand-drawn UKIS masks apart from index-rule and OSM labels) and on SAR vs VV < -15 dB;
- whole unseen scenes (optional, `finetune.validation_scenes`): the Sentinel-2 example against
  the index-label water rule (NDWI > 0 and dark; the NDWI > 0 baseline is nearly that rule, so it
  is an upper bound, not a rival), and the Sentinel-1 example against the SAR label rule (5x5
  mean VV < -18 dB) with the plain per-pixel VV < -15 dB threshold as its baseline.

    python -m finetune.validate_skyeye_tiny --model runs/skyeye-tiny/stage2/model \
        --val runs/skyeye-tiny/data/val.jsonl --train runs/skyeye-tiny/data/train.jsonl \
        --out runs/skyeye-tiny/validation.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from finetune.validation_questions import (
    answer_shapes,
    parse_yes_no,
    summarise_choice,
    summarise_refer,
    text_replay,
    training_priors,
)
from finetune.validation_scenes import example_scenes, iou_summary
from finetune.validation_tiles import Asker, hand_drawn, select_tiles, validate_tiles
from skyeye.atomic import write_text

__all__ = ["main", "select_tiles", "summarise"]

logger = logging.getLogger(__name__)


def _bin(value: float) -> int:
    return int(round(value / 5.0)) if value >= 10 else -1 if value < 1 else int(value)


def summarise(rows: dict[str, Any]) -> dict[str, Any]:  # noqa: C901 - one block per metric
    """Metric blocks (model vs baseline) from the per-question rows."""
    out: dict[str, Any] = {}
    pres = rows["presence"]
    if pres:
        per_class: dict[str, dict[str, float]] = {}
        for cls in sorted({r["class"] for r in pres}):
            sub = [r for r in pres if r["class"] == cls]
            per_class[cls] = {
                "n": len(sub),
                "model": float(np.mean([r["pred"] == r["gold"] for r in sub])),
                "majority": float(np.mean([r["baseline"] == r["gold"] for r in sub])),
            }
        out["presence"] = {
            "n": len(pres),
            "accuracy": float(np.mean([r["pred"] == r["gold"] for r in pres])),
            "baseline_majority_accuracy": float(
                np.mean([r["baseline"] == r["gold"] for r in pres])
            ),
            "blind_accuracy": float(np.mean([r.get("blind") == r["gold"] for r in pres])),
            "unparseable": int(sum(r["pred"] is None for r in pres)),
            "per_class": per_class,
        }
    prop = [r for r in rows["proportion"] if r["gold"] is not None]
    if prop:

        def agree(key: str, tol: float) -> float:
            return float(
                np.mean([r[key] is not None and abs(r[key] - r["gold"]) <= tol for r in prop])
            )

        def same_bin(key: str) -> float:
            return float(
                np.mean([r[key] is not None and _bin(r[key]) == _bin(r["gold"]) for r in prop])
            )

        def mae(key: str) -> float:
            return float(
                np.mean([abs((r[key] if r[key] is not None else 50.0) - r["gold"]) for r in prop])
            )

        out["proportion"] = {
            "n": len(prop),
            "agreement_within_10pts": agree("pred", 10),
            "blind_agreement_within_10pts": agree("blind", 10),
            "baseline_agreement_within_10pts": agree("baseline", 10),
            "same_bin": same_bin("pred"),
            "baseline_same_bin": same_bin("baseline"),
            "mae_pts": mae("pred"),
            "baseline_mae_pts": mae("baseline"),
            "unparseable": int(sum(r["pred"] is None for r in prop)),
        }
    # Hand-drawn labels (the UKIS masks) apart: index-rule and OSM labels are weak references,
    # and an empty hand-drawn tile would count as a won index-labelled one.
    for modality, name, base_name in (
        ("optical", "water_tiles", "baseline_ndwi"),
        ("sar", "water_tiles_sar", "baseline_vv"),
    ):
        water = [
            r
            for r in rows["water"]
            if (r.get("modality") == "sar") == (modality == "sar") and not hand_drawn(r)
        ]
        if water:
            out[name] = _water_block(water, base_name, WATER_LABELS[name])
    hand = [
        r
        for r in rows["water"] + rows.get("water_hand", [])
        if r.get("modality") != "sar" and hand_drawn(r)
    ]
    if hand:
        out["water_tiles_hand_labelled"] = _water_block(
            hand, "baseline_ndwi", WATER_LABELS["water_tiles_hand_labelled"]
        )
    for name, kind in (("mcq", "mcq"), ("count", "count")):
        if rows.get(kind):
            out[name] = summarise_choice(rows[kind])
    if rows.get("refer"):
        out["refer"] = summarise_refer(rows["refer"])
    out["answer_shape"] = answer_shapes(rows)
    return out


#: What each water block's numbers are measured against (the model card's dataset names).
WATER_LABELS = {
    "water_tiles": "index-rule (NDWI > 0 and dark) and OSM water labels",
    "water_tiles_sar": "SAR rule water labels (5x5 mean VV < -18 dB)",
    "water_tiles_hand_labelled": "water masks drawn by people (DLR UKIS)",
}


def _water_block(water: list[dict], base_name: str, labels: str) -> dict[str, Any]:
    """Model IoU on every water tile, and model vs baseline on the tiles the baseline covers;
    ``dataset`` names the scenes of these rows and their labels."""
    with_base = [r for r in water if r["baseline_iou"] is not None]
    scenes = sorted({str(r["scene"]) for r in water if r.get("scene")})
    block: dict[str, Any] = {
        "n": len(water),
        "seg_emitted": float(np.mean([r["has_seg"] for r in water])),
        "dataset": f"held-out scenes {', '.join(scenes)}; {labels}",
    }
    for key, val in iou_summary([r["iou"] for r in water]).items():
        block[f"model_{key}" if key != "n" else "n_all"] = val
    tag = base_name.removeprefix("baseline_")
    for key, val in iou_summary([r["iou"] for r in with_base]).items():
        block[f"model_{key}_{tag}_tiles" if key != "n" else f"n_{tag}_tiles"] = val
    for key, val in iou_summary([r["baseline_iou"] for r in with_base]).items():
        if key != "n":
            block[f"{base_name}_{key}"] = val
    # MNDWI > 0 where SWIR exists (optical), with the model on the same tiles.
    with_swir = [r for r in water if r.get("mndwi_iou") is not None]
    if with_swir:
        for key, val in iou_summary([r["iou"] for r in with_swir]).items():
            block[f"model_{key}_mndwi_tiles" if key != "n" else "n_mndwi_tiles"] = val
        for key, val in iou_summary([r["mndwi_iou"] for r in with_swir]).items():
            if key != "n":
                block[f"baseline_mndwi_{key}"] = val
    return block


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m finetune.validate_skyeye_tiny", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model", required=True)
    p.add_argument(
        "--val", type=Path, required=True, help="from_rasters val.jsonl (held-out scenes)"
    )
    p.add_argument(
        "--train", type=Path, required=True, help="from_rasters train.jsonl (baseline priors)"
    )
    p.add_argument("--out", type=Path, required=True, help="report JSON")
    p.add_argument("--max-tiles", type=int, default=400)
    p.add_argument("--ndwi-threshold", type=float, default=0.0)
    p.add_argument(
        "--sar-water-db",
        type=float,
        default=-18.0,
        help="reference water on the S1 scene: 5x5 mean VV (dB) below this (the label rule)",
    )
    p.add_argument("--vv-db-threshold", type=float, default=-15.0)
    p.add_argument("--s2-scene", type=Path, default=None, help="unseen Sentinel-2 scene (GeoTIFF)")
    p.add_argument(
        "--s2-scale", type=float, default=1e-4, help="reflectance = value x this, for --s2-scene"
    )
    p.add_argument(
        "--osm-water",
        type=Path,
        default=None,
        help="OSM polygons (GeoPackage): reference for --s2-scene instead of the index rule",
    )
    p.add_argument("--s1-scene", type=Path, default=None, help="unseen Sentinel-1 VV/VH scene (dB)")
    p.add_argument(
        "--overlay",
        type=Path,
        default=None,
        help="PNG of the S2 scene's water mask (the S1 one beside it: s2 -> s1 in the name, else _s1)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--base-llm",
        default="smollm2-135m-instruct",
        help="the base LLM whose answers to held-out text-only prompts the model is compared with",
    )
    p.add_argument(
        "--no-text-check",
        action="store_true",
        help="skip the text-only comparison with the base LLM",
    )
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("skyeye.io").setLevel(logging.WARNING)
    for f in (args.val, args.train):
        if not f.is_file():
            print(
                f"error: {f} does not exist: run python -m instruct_data.from_rasters first",
                file=sys.stderr,
            )
            return 2
    asker = Asker(args.model)
    priors = training_priors(args.train)
    rows = validate_tiles(
        asker, args.val, priors, args.max_tiles, args.ndwi_threshold, args.vv_db_threshold
    )
    held_out = sorted(
        {r["scene"] for part in ("presence", "proportion", "water") for r in rows[part]}
    )
    tasks = summarise(rows)
    if not args.no_text_check:
        from finetune.replay import base_answers, held_out_prompts
        from skyeye.chat.session import DEFAULT_SYSTEM_PROMPT

        prompts = held_out_prompts()
        base = base_answers(args.base_llm, prompts, DEFAULT_SYSTEM_PROMPT)
        text = text_replay(asker, prompts, base)
        rows["text_only"] = text.pop("rows")
        text["dataset"] = "held-out text-only prompts of finetune/data/replay/prompts.txt"
        tasks["text_only_vs_base_llm"] = text
    for block in tasks.values():
        block.setdefault("dataset", "held-out scenes " + ", ".join(held_out))
    report: dict[str, Any] = {
        "model": args.model,
        "data": str(args.val),
        "tasks": tasks,
        "priors": priors,
    }
    scenes = example_scenes(
        asker,
        s2_scene=args.s2_scene,
        s1_scene=args.s1_scene,
        s2_scale=args.s2_scale,
        osm_water_path=args.osm_water,
        ndwi_threshold=args.ndwi_threshold,
        vv_db_threshold=args.vv_db_threshold,
        sar_water_db=args.sar_water_db,
        overlay=args.overlay,
    )
    report["scenes"] = scenes
    for scene in scenes:
        # Scalar numbers of each unseen scene, so that model cards list them with the rest.
        block = {k: v for k, v in scene.items() if isinstance(v, (int, float))}
        block["answers_yes_to_water"] = float(parse_yes_no(scene["presence_answer"]) == "yes")
        block["n"] = 1
        block["dataset"] = scene["scene"].split(" ", 1)[1]
        report["tasks"][f"unseen scene: {scene['scene']}"] = block
    report["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: the recipe driver takes an existing report as a finished validation.
    write_text(args.out, json.dumps(report, indent=1, default=str))
    print(json.dumps({"tasks": report["tasks"], "scenes": scenes}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
