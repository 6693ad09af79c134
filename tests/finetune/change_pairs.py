"""Synthetic change pairs for the change-stage tests: a square of water appears between dates."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import rasterio

from skyeye.io.rle import encode_mask

BANDS = ["B", "G", "R", "NIR"]
WAVES = [0.49, 0.56, 0.665, 0.842]
WATER = np.array([50.0, 90.0, 40.0, 20.0], np.float32)[:, None, None]


def _write(path: Path, data: np.ndarray) -> None:
    profile = dict(
        driver="GTiff", height=data.shape[1], width=data.shape[2], count=4, dtype="float32"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            for i, name in enumerate(BANDS, 1):
                dst.set_band_description(i, name)


def write_square_pairs(folder: Path, name: str, n: int, seed: int, size: int = 24) -> Path:
    """``n`` before/after tile pairs (every other one unchanged) and their change records in
    ``folder/<name>.jsonl``: the unified format `python -m instruct_data.change` writes."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(n):
        before = rng.uniform(60, 200, size=(4, size, size)).astype(np.float32)
        after = before + rng.normal(0, 3, size=before.shape).astype(np.float32)
        mask = np.zeros((size, size), bool)
        if k % 2 == 0:
            side = int(rng.integers(5, 10))
            r, c = (int(v) for v in rng.integers(0, size - side, size=2))
            mask[r : r + side, c : c + side] = True
            after = np.where(mask, WATER + rng.normal(0, 3, size=after.shape), after)
        paths = []
        for t, data in enumerate((before, after), 1):
            rel = f"images/{name}_{k:03d}_t{t}.tif"
            _write(folder / rel, data.astype(np.float32))
            paths.append(rel)
        share = float(mask.mean())
        answer = "<p>changed land cover</p> [SEG] " + (
            f"About {100 * share:.1f}% of the area changed." if share else "Nothing changed."
        )
        record = {
            "schema_version": "1.0",
            "id": f"synthetic:{name}{k}:r0c0:what",
            "source": "synthetic-change",
            "task": "change",
            "images": [
                {
                    "path": p,
                    "modality": "multispectral",
                    "band_names": BANDS,
                    "wavelengths": WAVES,
                    "time": t,
                    "size": [size, size],
                }
                for p, t in zip(paths, ("pre", "post"), strict=True)
            ],
            "turns": [
                {"role": "user", "text": "<image>\n<image>\nWhat changed between these images?"},
                {
                    "role": "assistant",
                    "text": answer,
                    "masks": [{"seg_index": 0, "image_index": 1, "rle": encode_mask(mask)}],
                },
            ],
            "meta": {"dataset": "synthetic-change", "split": name},
        }
        lines.append(json.dumps(record) + "\n")
    out = folder / f"{name}.jsonl"
    out.write_text("".join(lines))
    return out
