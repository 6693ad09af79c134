"""COCO RLE helpers (pycocotools): encode, normalise, union, polygons -> RLE."""

from __future__ import annotations

from typing import Any

from pycocotools import mask as mask_utils

# Encoding and decoding are shared with the library (skyeye.io.rle); re-exported here.
from skyeye.io.rle import decode_rle as decode_mask  # noqa: F401
from skyeye.io.rle import encode_mask  # noqa: F401
from skyeye.io.rle import to_coco as _to_coco


def _to_text(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


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
