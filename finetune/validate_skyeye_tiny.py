"""`python -m finetune.validate_skyeye_tiny`: held-out numbers of a skyeye-tiny model vs baselines.

Everything is asked through `skyeye.ChatSession` (what a user gets), one fresh conversation per
question, on the held-out tiles written by `instruct_data.from_rasters` (`val.jsonl`):

- presence (yes/no per class): accuracy vs the majority answer of that class in `train.jsonl`;
- proportion ("about N%"): agreement (|predicted - label| <= 10 points, and same 5-point bin) and
  mean absolute error vs the most frequent answer of that class in training;
- water masks: per-sample IoU (gIoU) and cIoU of the `[SEG]` mask vs the tile's water mask, and
  the NDWI > 0 baseline (needs green + NIR bands) on the same tiles;
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
import hashlib
import json
import logging
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from finetune.validation_scenes import (
    example_scenes,
    iou_summary,
    mask_iou,
    mndwi_water,
    ndwi_water,
    vv_threshold_water,
)
from skyeye.io.resample import resize_mask

logger = logging.getLogger(__name__)

_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


def parse_yes_no(text: str) -> str | None:
    """'yes' / 'no' from the first word of an answer, else None."""
    word = re.match(r"\W*(\w+)", text.lower())
    return word.group(1) if word and word.group(1) in ("yes", "no") else None


def parse_percent(text: str) -> float | None:
    """The share (0..100) an answer states; 'less than 1%' -> 0.5; None when there is none."""
    low = text.lower()
    if "less than 1%" in low:
        return 0.5
    found = _PERCENT.search(low)
    return float(found.group(1)) if found else None


def _bin(value: float) -> int:
    return int(round(value / 5.0)) if value >= 10 else -1 if value < 1 else int(value)


def _stable(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


def _qa_pairs(record: dict) -> list[tuple[str, str]]:
    turns = record["turns"]
    return [
        (turns[i]["text"].replace("<image>", "").strip(), turns[i + 1]["text"])
        for i in range(0, len(turns) - 1, 2)
    ]


def training_priors(train: Path) -> dict[str, Any]:
    """Majority presence answer and most frequent proportion answer per class in `train`."""
    presence: dict[str, Counter] = defaultdict(Counter)
    proportion: dict[str, Counter] = defaultdict(Counter)
    for line in open(train, encoding="utf-8"):
        rec = json.loads(line)
        meta = rec["meta"]
        if meta.get("gen_task") == "presence":
            for (_, answer), item in zip(_qa_pairs(rec), meta.get("answers", []), strict=False):
                if (yn := parse_yes_no(answer)) is not None:
                    presence[item["class"]][yn] += 1
        elif meta.get("gen_task") == "proportion":
            value = parse_percent(rec["turns"][-1]["text"])
            if value is not None:
                proportion[meta["classes"][0]][value] += 1
    overall = sum(presence.values(), Counter())
    return {
        "presence": {c: n.most_common(1)[0][0] for c, n in presence.items()},
        "presence_overall": overall.most_common(1)[0][0] if overall else "yes",
        "proportion": {c: n.most_common(1)[0][0] for c, n in proportion.items()},
        "proportion_overall": sum(proportion.values(), Counter()).most_common(1)[0][0]
        if proportion
        else 10.0,
    }


class Asker:
    """One fresh ChatSession conversation per question."""

    def __init__(self, model: str, max_new_tokens: int = 40) -> None:
        import torch

        from skyeye.chat.session import GenerationSettings, load_chat

        # bfloat16, as `python -m skyeye.chat` loads it by default.
        self.session = load_chat(
            model, dtype=torch.bfloat16, settings=GenerationSettings(max_new_tokens=max_new_tokens)
        )

    def ask(self, image: Any, question: str) -> Any:
        self.session.reset()
        self.session.add_image(image)
        return self.session.ask(question)

    def ask_blind(self, question: str) -> Any:
        """The same model (LLM + adapter) asked without the image: the blind baseline, i.e. how
        much of a score comes from the question alone."""
        self.session.reset()
        return self.session.ask(question)


def read_tile(image: dict, root: Path, sar_wavelength: float | None) -> Any:
    from skyeye.io.raster import read_raster

    kwargs: dict[str, Any] = {}
    if image.get("band_names"):
        kwargs["band_names"] = image["band_names"]
    waves = image.get("wavelengths")
    if waves is not None and all(w is not None for w in waves):
        kwargs["wavelengths"] = waves
    if image.get("modality") == "sar":
        kwargs.update(sensor="sentinel-1", sar_wavelength=sar_wavelength)
    return read_raster(str(root / image["path"]), **kwargs)


def validate_tiles(
    asker: Asker,
    val: Path,
    priors: dict[str, Any],
    max_tiles: int,
    ndwi_threshold: float,
    vv_db_threshold: float = -15.0,
) -> dict[str, Any]:
    """Presence, proportion and water-mask numbers on the held-out tiles of `val`."""
    from skyeye.io.rle import decode_rle as _decode_rle

    root = val.parent
    records = [json.loads(line) for line in open(val, encoding="utf-8")]
    by_tile: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        if rec["meta"].get("gen_task") in ("presence", "proportion", "segmentation"):
            by_tile[rec["images"][0]["path"]].append(rec)

    def has_water_mask(path: str) -> bool:
        return any(
            r["meta"]["gen_task"] == "segmentation" and "<p>water</p>" in r["turns"][1]["text"]
            for r in by_tile[path]
        )

    tiles = select_tiles(by_tile, has_water_mask, max_tiles)
    sar_wl = asker.session.processor.image_processor.sar_wavelength
    pres: list[dict] = []
    prop: list[dict] = []
    water: list[dict] = []
    for path in tqdm(tiles, desc="held-out tiles", unit="tile"):
        recs = by_tile[path]
        image = read_tile(recs[0]["images"][0], root, sar_wl)
        for rec in recs:
            meta, task = rec["meta"], rec["meta"]["gen_task"]
            common = {
                "id": rec["id"],
                "scene": meta["scene_id"],
                "label_type": meta["label_type"],
                "band_subset": meta.get("band_subset"),
            }
            if task == "presence":
                for (q, a), item in zip(_qa_pairs(rec), meta.get("answers", []), strict=False):
                    gold = parse_yes_no(a)
                    reply = asker.ask(image, q)
                    blind = asker.ask_blind(q)
                    base = priors["presence"].get(item["class"], priors["presence_overall"])
                    pres.append(
                        {
                            **common,
                            "class": item["class"],
                            "question": q,
                            "gold": gold,
                            "answer": reply.text,
                            "pred": parse_yes_no(reply.text),
                            "blind": parse_yes_no(blind.text),
                            "baseline": base,
                        }
                    )
            elif task == "proportion":
                (q, a), cls = _qa_pairs(rec)[0], meta["classes"][0]
                reply = asker.ask(image, q)
                blind = asker.ask_blind(q)
                prop.append(
                    {
                        **common,
                        "class": cls,
                        "question": q,
                        "gold": parse_percent(a),
                        "answer": reply.text,
                        "pred": parse_percent(reply.text),
                        "blind": parse_percent(blind.text),
                        "baseline": priors["proportion"].get(cls, priors["proportion_overall"]),
                    }
                )
            elif task == "segmentation":
                turn = rec["turns"][1]
                phrases = re.findall(r"<p>(.*?)</p>", turn["text"])
                if not phrases or phrases[0] != "water":
                    continue
                gt = _decode_rle(turn["masks"][0]["rle"]).astype(bool)
                reply = asker.ask(image, rec["turns"][0]["text"].replace("<image>", "").strip())
                pred = np.zeros_like(gt)
                if reply.masks:
                    m = reply.masks[0]
                    pred = m if m.shape == gt.shape else resize_mask(m, gt.shape)
                mndwi = None
                if rec["images"][0].get("modality") == "sar":
                    base = vv_threshold_water(image, vv_db_threshold)
                else:
                    base = ndwi_water(image.data, image.wavelengths, ndwi_threshold)
                    mndwi = mndwi_water(image.data, image.wavelengths, 0.0)
                water.append(
                    {
                        **common,
                        "modality": rec["images"][0].get("modality"),
                        "answer": reply.text,
                        "has_seg": bool(reply.masks),
                        "iou": mask_iou(pred, gt),
                        "baseline_iou": None if base is None else mask_iou(base, gt),
                        "mndwi_iou": None if mndwi is None else mask_iou(mndwi, gt),
                        "gt_share": float(gt.mean()),
                    }
                )
    return {"presence": pres, "proportion": prop, "water": water, "tiles": len(tiles)}


def select_tiles(by_tile: dict[str, list[dict]], has_water_mask: Any, max_tiles: int) -> list[str]:
    """Up to ``max_tiles`` tiles, taken from the held-out scenes in turn (so a large scene does
    not crowd out a small one); within a scene, tiles with a water mask first, then a stable
    hash order, so the subset does not depend on the file order."""
    scenes: dict[str, list[str]] = defaultdict(list)
    for path, recs in by_tile.items():
        scenes[recs[0]["meta"]["scene_id"]].append(path)
    queues = [
        sorted(paths, key=lambda t: (not has_water_mask(t), _stable(t)))
        for _, paths in sorted(scenes.items())
    ]
    out: list[str] = []
    while len(out) < max_tiles and any(queues):
        for q in queues:
            if q and len(out) < max_tiles:
                out.append(q.pop(0))
    return out


def summarise(rows: dict[str, Any]) -> dict[str, Any]:
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
    for modality, name, base_name in (
        ("optical", "water_tiles", "baseline_ndwi"),
        ("sar", "water_tiles_sar", "baseline_vv"),
    ):
        water = [r for r in rows["water"] if (r.get("modality") == "sar") == (modality == "sar")]
        if water:
            out[name] = _water_block(water, base_name)
    out["answer_shape"] = answer_shapes(rows)
    return out


def answer_shapes(rows: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Share of answers in the shape the question asks for, per question type: yes/no (presence:
    the answer starts with yes or no), number (proportion: it states a share), mask
    (segmentation: it has a mask). The held-out set has no letter or box questions yet."""
    kinds = {
        "yes/no": [r["pred"] is not None for r in rows["presence"]],
        "number": [r["pred"] is not None for r in rows["proportion"]],
        "mask": [r["has_seg"] for r in rows["water"]],
    }
    return {k: {"n": len(v), "in_shape": float(np.mean(v))} for k, v in kinds.items() if v}


def _water_block(water: list[dict], base_name: str) -> dict[str, Any]:
    """Model IoU on every water tile, and model vs baseline on the tiles the baseline covers."""
    with_base = [r for r in water if r["baseline_iou"] is not None]
    block: dict[str, Any] = {
        "n": len(water),
        "seg_emitted": float(np.mean([r["has_seg"] for r in water])),
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
    p.add_argument("--overlay", type=Path, default=None, help="PNG of the S2 scene's water mask")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
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
    for block in tasks.values():
        block["dataset"] = "held-out scenes " + ", ".join(held_out)
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
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps({"tasks": report["tasks"], "scenes": scenes}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
