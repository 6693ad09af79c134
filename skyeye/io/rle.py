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
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"RLE 'size' must be [h, w], got {str(rle['size'])[:40]!r}") from None
    if not (0 <= h <= MAX_SIDE and 0 <= w <= MAX_SIDE):
        raise ValueError(f"RLE 'size' [{h}, {w}] is outside 0..{MAX_SIDE} pixels a side")
    counts = rle["counts"]
    # pycocotools trusts its input (a wrong count crashes the process): check it here first.
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError("RLE 'counts' list must hold non-negative integers")
        _check_total(sum(counts), h, w)
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("RLE 'counts' string must be ASCII (COCO compressed RLE)") from None
    if not isinstance(counts, bytes):
        raise ValueError(f"RLE 'counts' must be a string or a list, got {type(counts).__name__}")
    _check_total(sum(_runs_of(counts)), h, w)
    return {"size": [h, w], "counts": counts}


#: Largest mask side accepted (pycocotools counts pixels in 32 bits).
MAX_SIDE = 46_000


def _check_total(total: int, h: int, w: int) -> None:
    if total != h * w:
        raise ValueError(f"RLE runs cover {total} pixels, but size {h}x{w} has {h * w}")


def _runs_of(counts: bytes) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' rleFrString, checked):
    ValueError for characters outside the alphabet, a cut-off number or a negative run."""
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n or k > 6:
                raise ValueError("RLE 'counts' string is cut off or corrupt")
            c = counts[p] - 48
            if not 0 <= c <= 63:
                raise ValueError(f"RLE 'counts' holds {chr(counts[p])!r}, not a COCO RLE character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise ValueError("RLE 'counts' string decodes to a negative run")
        runs.append(x)
    return runs


def decode_rle(rle: Any) -> np.ndarray:
    """COCO RLE -> (H, W) bool; ValueError when it cannot be decoded."""
    try:
        return mask_utils.decode(to_coco(rle)).astype(bool)
    except (TypeError, UnicodeError) as err:
        raise ValueError(f"cannot decode RLE: {err}") from None
