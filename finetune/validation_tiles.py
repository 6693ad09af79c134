"""Held-out tiles questioned through `skyeye.ChatSession` for `finetune.validate_skyeye_tiny`:
one fresh conversation per question; per-question rows of every kind (presence, proportion,
water masks, multiple choice, counting, boxes)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from finetune.validation_questions import (
    ask_count,
    ask_mcq,
    ask_refer,
    parse_percent,
    parse_yes_no,
    qa_pairs,
)
from finetune.validation_scenes import (
    WATER_PROMPT,
    mask_iou,
    mndwi_water,
    ndwi_water,
    vv_threshold_water,
)
from skyeye.io.resample import resize_mask
from skyeye.io.rle import decode_rle


def _stable(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


class Asker:
    """One fresh ChatSession conversation per question."""

    def __init__(self, model: str, max_new_tokens: int = 40) -> None:
        import torch

        from skyeye.chat.session import GenerationSettings, load_chat

        # bfloat16, as `python -m skyeye.chat` loads it by default.
        self.session = load_chat(
            model, dtype=torch.bfloat16, settings=GenerationSettings(max_new_tokens=max_new_tokens)
        )
        # Templated questions repeat across tiles; without the image the greedy answer depends
        # on the question alone, so each is asked once.
        self._blind: dict[str, Any] = {}

    def ask(self, image: Any, question: str) -> Any:
        self.session.reset()
        self.session.add_image(image)
        return self.session.ask(question)

    def ask_blind(self, question: str) -> Any:
        """The same model (LLM + adapter) asked without the image: the blind baseline, i.e. how
        much of a score comes from the question alone."""
        if question not in self._blind:
            self.session.reset()
            self._blind[question] = self.session.ask(question)
        return self._blind[question]


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


#: Generator tasks asked on the held-out tiles.
QUESTION_TASKS = ("presence", "proportion", "segmentation", "mcq", "count", "refer")


def validate_tiles(
    asker: Asker,
    val: Path,
    priors: dict[str, Any],
    max_tiles: int,
    ndwi_threshold: float,
    vv_db_threshold: float = -15.0,
) -> dict[str, Any]:
    """Presence, proportion and water-mask numbers on the held-out tiles of `val`."""
    root = val.parent
    records = [json.loads(line) for line in open(val, encoding="utf-8")]
    by_tile: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        if rec["meta"].get("gen_task") in QUESTION_TASKS:
            by_tile[rec["images"][0]["path"]].append(rec)

    def has_water_mask(path: str) -> bool:
        return any(
            r["meta"]["gen_task"] == "segmentation" and "<p>water</p>" in r["turns"][1]["text"]
            for r in by_tile[path]
        )

    tiles = select_tiles(by_tile, has_water_mask, max_tiles)
    thresholds = (ndwi_threshold, vv_db_threshold)
    asked_water: set[str] = set()
    sar_wl = asker.session.processor.image_processor.sar_wavelength
    pres: list[dict] = []
    prop: list[dict] = []
    water: list[dict] = []
    mcq: list[dict] = []
    count: list[dict] = []
    refer: list[dict] = []
    for path in tqdm(tiles, desc="held-out tiles", unit="tile"):
        recs = by_tile[path]
        image = read_tile(recs[0]["images"][0], root, sar_wl)
        for rec in recs:
            meta, task = rec["meta"], rec["meta"]["gen_task"]
            common = _common(rec)
            if task == "mcq":
                mcq.append({**common, **ask_mcq(asker, image, rec, priors)})
            elif task == "count":
                count.append({**common, **ask_count(asker, image, rec, priors)})
            elif task == "refer":
                refer.append({**common, **ask_refer(asker, image, rec, priors)})
            elif task == "presence":
                for (q, a), item in zip(qa_pairs(rec), meta.get("answers", []), strict=False):
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
                (q, a), cls = qa_pairs(rec)[0], meta["classes"][0]
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
                if not phrases or phrases[0] != "water" or path in asked_water:
                    continue
                gt = decode_rle(turn["masks"][0]["rle"]).astype(bool)
                question = rec["turns"][0]["text"].replace("<image>", "").strip()
                water.append({**common, **_water_row(asker, image, rec, question, gt, thresholds)})
                asked_water.add(path)
            if task == "presence" and hand_drawn(common) and path not in asked_water:
                row = _hand_water_row(asker, image, rec, common, thresholds)
                if row is not None:
                    water.append(row)
                    asked_water.add(path)
    # Hand-drawn tiles are few and the hand-labelled water numbers are measured on them: every
    # one not questioned above is asked for the water mask alone (these rows count only there).
    water_hand: list[dict] = []
    chosen = set(tiles)
    rest = [p for p in sorted(by_tile, key=_stable) if p not in chosen]
    for path in tqdm(rest, desc="hand-labelled water tiles", unit="tile"):
        for rec in by_tile[path]:
            common = _common(rec)
            if rec["meta"]["gen_task"] != "presence" or not hand_drawn(common):
                continue
            image = read_tile(rec["images"][0], root, sar_wl)
            row = _hand_water_row(asker, image, rec, common, thresholds)
            if row is not None:
                water_hand.append(row)
                break
    return {
        "presence": pres,
        "proportion": prop,
        "water": water,
        "water_hand": water_hand,
        "mcq": mcq,
        "count": count,
        "refer": refer,
        "tiles": len(tiles),
    }


#: Held-out scenes whose masks were drawn by people (DLR's UKIS csmask reference masks); the
#: other held-out labels come from index rules, OSM polygons or the SAR threshold rule.
HAND_LABELLED_SCENES = ("ukis-landsat5",)


def hand_drawn(row: dict) -> bool:
    """Rows of a hand-labelled scene, on its class raster (not an index layer)."""
    return row.get("scene") in HAND_LABELLED_SCENES and row.get("label_type") == "class_raster"


def _common(rec: dict) -> dict[str, Any]:
    """The fields every row of a record carries."""
    meta = rec["meta"]
    return {
        "id": rec["id"],
        "scene": meta["scene_id"],
        "label_type": meta["label_type"],
        "band_subset": meta.get("band_subset"),
        "label_source": meta.get("label_source"),
    }


def _hand_water_row(
    asker: Any, image: Any, rec: dict, common: dict, thresholds: tuple
) -> dict[str, Any] | None:
    """The water-mask row of a hand-drawn presence record: its grounded water mask (empty when
    there is no water) is the reference. None when the record has no water answer."""
    for item, turn in zip(rec["meta"].get("answers", []), rec["turns"][1::2], strict=False):
        if item["class"] == "water" and turn.get("masks"):
            gt = decode_rle(turn["masks"][0]["rle"]).astype(bool)
            row = _water_row(asker, image, rec, WATER_PROMPT, gt, thresholds)
            return {**common, **row, "label_from": "presence mask"}
    return None


def _water_row(
    asker: Any, image: Any, rec: dict, question: str, gt: np.ndarray, thresholds: tuple
) -> dict[str, Any]:
    """Ask for the water mask; its IoU and the threshold baselines' against ``gt``."""
    ndwi_threshold, vv_db_threshold = thresholds
    reply = asker.ask(image, question)
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
    return {
        "modality": rec["images"][0].get("modality"),
        "answer": reply.text,
        "has_seg": bool(reply.masks),
        "iou": mask_iou(pred, gt),
        "baseline_iou": None if base is None else mask_iou(base, gt),
        "mndwi_iou": None if mndwi is None else mask_iou(mndwi, gt),
        "gt_share": float(gt.mean()),
    }


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
