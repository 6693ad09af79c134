"""`python -m finetune.validate_skyeye_tiny`: held-out numbers of a skyeye-tiny model vs baselines.

This module only says what makes the card: which splits (the held-out tiles of
`instruct_data.from_rasters`' `val.jsonl`, the priors of `train.jsonl`), which tasks, which unseen
scenes. Asking, parsing and scoring are `skyeye.evaluation`'s (`heldout.evaluate_heldout`, the
same code as ``python -m skyeye.evaluate --train``), one fresh conversation per question:

- presence (yes/no per class): accuracy vs the majority answer of that class in `train.jsonl`
  and vs the blind model (the same weights asked without the image);
- multiple choice (letter) and counting (a number) vs the most frequent answer and the blind
  model; boxes (Acc@0.5) vs the class's median training box; the share of answers in the asked
  shape per question type;
- text-only prompts held out of the replay file: the tuned model's answers vs the base LLM's;
- proportion ("about N%"): agreement (|predicted - label| <= 10 points, and same 5-point bin) and
  mean absolute error vs the most frequent answer of that class in training;
- water masks: per-sample IoU (gIoU) and cIoU of the `[SEG]` mask vs the tile's water mask, and
  the NDWI > 0 and MNDWI > 0 baselines (green + NIR / SWIR1) on the same tiles, also per label
  source (hand-drawn UKIS masks apart from index-rule and OSM labels) and on SAR vs VV < -15 dB;
- whole unseen scenes (optional, `skyeye.evaluation.unseen_scenes`): the Sentinel-2 example
  against the index-label water rule, the Sentinel-1 example against the SAR label rule.

    python -m finetune.validate_skyeye_tiny --model runs/skyeye-tiny/stage2/model \\
        --val runs/skyeye-tiny/data/val.jsonl --train runs/skyeye-tiny/data/train.jsonl \\
        --out runs/skyeye-tiny/validation.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from skyeye.atomic import write_text
from skyeye.evaluation.heldout import HELD_OUT_TASKS, evaluate_heldout, open_asker
from skyeye.evaluation.tasks.caption import text_replay
from skyeye.evaluation.unseen_scenes import example_scenes, scene_blocks

__all__ = ["CARD_TASKS", "main"]

logger = logging.getLogger(__name__)

#: The tasks whose blocks make the skyeye-tiny card, in card order.
CARD_TASKS = HELD_OUT_TASKS
#: Tokens per answer: the card's answers are short (a mask and a sentence).
MAX_NEW_TOKENS = 40


def build_parser() -> argparse.ArgumentParser:
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from skyeye.chat.session import GenerationSettings

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
    # bfloat16, as `python -m skyeye.chat` loaded it when the card's numbers were measured.
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS)
    asker = open_asker(args.model, settings=settings, dtype=torch.bfloat16)
    heldout = evaluate_heldout(
        asker,
        args.val,
        args.train,
        tasks=CARD_TASKS,
        max_tiles=args.max_tiles,
        ndwi_threshold=args.ndwi_threshold,
        vv_db_threshold=args.vv_db_threshold,
    )
    tasks, rows = heldout["tasks"], heldout["rows"]
    if not args.no_text_check:
        from finetune.replay import base_answers, held_out_prompts
        from skyeye.chat.session import DEFAULT_SYSTEM_PROMPT

        prompts = held_out_prompts()
        base = base_answers(args.base_llm, prompts, DEFAULT_SYSTEM_PROMPT)
        text = text_replay(asker, prompts, base)
        rows["text_only"] = text.pop("rows")
        text["dataset"] = "held-out text-only prompts of finetune/data/replay/prompts.txt"
        tasks["text_only_vs_base_llm"] = text
    report: dict[str, Any] = {
        "model": args.model,
        "data": str(args.val),
        "tasks": tasks,
        "priors": heldout["priors"],
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
    report["tasks"].update(scene_blocks(scenes))
    report["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: the recipe driver takes an existing report as a finished validation.
    write_text(args.out, json.dumps(report, indent=1, default=str))
    print(json.dumps({"tasks": report["tasks"], "scenes": scenes}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
