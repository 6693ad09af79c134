"""COCO RLE helpers (pycocotools): encode, normalise, union, polygons -> RLE."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def _to_text(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def _to_coco(rle: dict) -> dict:
    """Compressed RLE with bytes counts, as pycocotools wants; uncompressed (list counts) accepted."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("an RLE must be an object with 'size' [h, w] and 'counts'")
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [h, w], "counts": counts}


def encode_mask(mask: np.ndarray) -> dict:
    """Binary mask (H, W) -> compressed COCO RLE ``{"size": [H, W], "counts": str}``."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    return _to_text(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))


def decode_mask(rle: dict) -> np.ndarray:
    """COCO RLE -> bool array (H, W)."""
    return mask_utils.decode(_to_coco(rle)).astype(bool)


def normalize_rle(rle: dict) -> dict:
    """Any COCO RLE (compressed or uncompressed) -> compressed with a str ``counts``."""
    return _to_text(_to_coco(rle))


def union_rles(rles: list[dict]) -> dict:
    """Pixel-wise OR of RLEs of one size (raises ValueError on differing sizes or an empty list)."""
    if not rles:
        raise ValueError("cannot take the union of zero masks")
    coco = [_to_coco(r) for r in rles]
    sizes = {tuple(r["size"]) for r in coco}
    if len(sizes) != 1:
        raise ValueError(f"masks to merge have different sizes {sorted(sizes)}")
    if len(coco) == 1:
        return _to_text(coco[0])
    return _to_text(mask_utils.merge(coco, intersect=False))


def segmentation_to_rle(seg: Any, height: int, width: int) -> dict:
    """COCO ``segmentation`` (polygon list, or RLE) on an image of (height, width) -> one RLE."""
    if isinstance(seg, dict):
        return normalize_rle(seg)
    if not (
        isinstance(seg, list) and seg and all(isinstance(p, list) and len(p) >= 6 for p in seg)
    ):
        raise ValueError("segmentation must be a list of polygons with at least 3 points each")
    return _to_text(mask_utils.merge(mask_utils.frPyObjects(seg, height, width)))


def rle_area(rle: dict) -> int:
    """Number of foreground pixels."""
    return int(mask_utils.area(_to_coco(rle)))
