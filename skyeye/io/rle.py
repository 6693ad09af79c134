"""COCO run-length encoding of binary masks (the format of masks in instruction data and reports)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool -> compressed COCO RLE `{"size": [H, W], "counts": str}`."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def to_coco(rle: Any) -> dict[str, Any]:
    """Any COCO RLE (compressed str/bytes counts, or uncompressed list counts) -> pycocotools'
    compressed form; ValueError naming the problem otherwise."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("an RLE needs 'size' [h, w] and 'counts'")
    try:
        h, w = (int(v) for v in rle["size"])
    except (TypeError, ValueError):
        raise ValueError(f"RLE 'size' must be [h, w], got {rle['size']!r}") from None
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if not isinstance(counts, bytes):
        raise ValueError(f"RLE 'counts' must be a string or a list, got {type(counts).__name__}")
    return {"size": [h, w], "counts": counts}


def decode_rle(rle: Any) -> np.ndarray:
    """COCO RLE -> (H, W) bool; ValueError when it cannot be decoded."""
    try:
        return mask_utils.decode(to_coco(rle)).astype(bool)
    except (TypeError, UnicodeError) as err:
        raise ValueError(f"cannot decode RLE: {err}") from None
