"""Image look-ups the converters share: resolve paths, read sizes, spot placeholder images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

GUESS_EXTS = (".jpg", ".png", ".tif", ".tiff", ".jpeg", ".jp2")


def resolve(root: Path, rel: str) -> Path | None:
    """``root/rel`` if it exists; for a name without suffix, the first ``root/rel.EXT`` that exists."""
    p = root / rel
    if p.exists():
        return p
    if not Path(rel).suffix:
        for ext in GUESS_EXTS:
            q = root / (rel + ext)
            if q.exists():
                return q
    return None


def image_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from the file header (PIL, then rasterio), None when unreadable."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except Exception:  # noqa: BLE001 - any unreadable file: fall back to rasterio
        pass
    try:
        import rasterio

        with rasterio.open(path) as ds:
            return ds.height, ds.width
    except Exception:  # noqa: BLE001
        return None


def is_placeholder(path: Path) -> bool:
    """True for an all-black or all-white 8-bit picture (ChatEarthNet has some)."""
    with Image.open(path) as im:
        a = np.asarray(im)
    return bool(a.size) and (int(a.max()) == 0 or int(a.min()) == 255)
