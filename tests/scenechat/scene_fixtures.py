"""Builders for the scene-aware chat tests: a real Sentinel-2 GeoTIFF larger than the 512-px
window (the bundled 512 x 512 crop, mirrored to 640 x 600) and a tiny segmenting model folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from skyeye_testing import REPO, make_tiny_model

EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"
BIG_SHAPE = (600, 640)  # (height, width): larger than the default 512-px window


def write_big_scene(path: Path) -> Path:
    """The 13-band example mirrored at its right and bottom edges to 640 x 600 px, same CRS."""
    with rasterio.open(EXAMPLE) as src:
        data, profile, descriptions = src.read(), src.profile, src.descriptions
    h, w = BIG_SHAPE
    wide = np.concatenate([data, data[:, :, ::-1][:, :, : w - data.shape[2]]], axis=2)
    big = np.concatenate([wide, wide[:, ::-1, :][:, : h - data.shape[1]]], axis=1)
    profile.update(width=w, height=h)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(big)
        dst.descriptions = descriptions
    return path


def save_segmenting_folder(llm_dir: Path, folder: Path) -> Path:
    """A model folder of the tiny random SkyEye with a mask head (what `--model` loads)."""
    model, processor = make_tiny_model(llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    model.save_pretrained(folder, processor=processor)
    return folder
