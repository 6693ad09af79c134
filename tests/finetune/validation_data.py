"""A tiny from_rasters-like held-out split for the validation tests: 4-band 8x8 tiles, records of
every question kind the card asks, and a train split for the priors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from pycocotools import mask as mask_utils

BANDS = ["B1", "B2", "B3", "B4"]
WAVES = [0.485, 0.56, 0.66, 0.83]


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def water_gt() -> np.ndarray:
    gt = np.zeros((8, 8), bool)
    gt[:3] = True
    return gt


def write_tile(root: Path, name: str) -> str:
    path = root / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.full((4, 8, 8), 0.1, np.float32)
    data[3, :3] = 0.01  # dark NIR where the water is
    prof = dict(driver="GTiff", width=8, height=8, count=4, dtype="float32")
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    return f"images/{name}"


def record(rid: str, path: str, gen_task: str, pairs: list, scene: str, **meta) -> dict:
    turns = []
    for i, pair in enumerate(pairs):
        q, a = pair[:2]
        turns.append({"role": "user", "text": ("<image>\n" if i == 0 else "") + q})
        turns.append({"role": "assistant", "text": a, **(pair[2] if len(pair) > 2 else {})})
    return {
        "id": rid,
        "task": "vqa",
        "images": [
            {"path": path, "modality": "multispectral", "band_names": BANDS, "wavelengths": WAVES}
        ],
        "turns": turns,
        "meta": {
            "gen_task": gen_task,
            "scene_id": scene,
            "label_type": meta.pop("label_type", "index"),
            **meta,
        },
    }


def tile_records(path: str, scene: str, label_type: str = "index") -> list[dict]:
    """One record of every kind on the tile at ``path``."""
    seg = {"masks": [{"seg_index": 0, "image_index": 0, "rle": rle(water_gt())}]}
    kw = {"label_type": label_type}
    return [
        record(
            f"{path}:presence",
            path,
            "presence",
            [
                ("Is there any water? Answer yes or no.", "<p>water</p> [SEG] Yes.", seg),
                ("Is there any forest? Answer yes or no.", "<p>forest</p> [SEG] No."),
            ],
            scene,
            classes=["water", "forest"],
            answers=[{"class": "water", "answer": "yes"}, {"class": "forest", "answer": "no"}],
            **kw,
        ),
        record(
            f"{path}:proportion",
            path,
            "proportion",
            [("How much of the image is water?", "About 40% of the image is water.")],
            scene,
            classes=["water"],
            **kw,
        ),
        record(
            f"{path}:mcq",
            path,
            "mcq",
            [("What covers most of it?\nA. water\nB. forest\nC. city", "C")],
            scene,
            answer="C",
            **kw,
        ),
        record(
            f"{path}:count",
            path,
            "count",
            [("How many lakes are there?", "2")],
            scene,
            classes=["water"],
            count=2,
            **kw,
        ),
        record(
            f"{path}:refer",
            path,
            "refer",
            [("Where is the water?", "{<0><0><100><37>}", {"boxes": [{"xyxy": [0, 0, 1, 0.37]}]})],
            scene,
            classes=["water"],
            **kw,
        ),
        record(
            f"{path}:segmentation",
            path,
            "segmentation",
            [("Segment the water.", "<p>water</p> [SEG]", seg)],
            scene,
            classes=["water"],
            **kw,
        ),
    ]


def write_split(root: Path) -> tuple[Path, Path]:
    """(val.jsonl, train.jsonl) in ``root``: two index-labelled tiles and two hand-drawn ones."""
    val = []
    for i in range(2):
        val += tile_records(write_tile(root, f"a{i}.tif"), "scene-a")
    for i in range(2):
        hand = tile_records(write_tile(root, f"u{i}.tif"), "ukis-landsat5", "class_raster")
        val += [r for r in hand if r["meta"]["gen_task"] == "presence"]
    train = tile_records(write_tile(root, "t.tif"), "scene-t")
    (root / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in val))
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    return root / "val.jsonl", root / "train.jsonl"
