"""Image look-ups the converters share: resolve paths, read sizes, spot placeholder images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from skyeye.errors import ImagePathError
from skyeye.io.paths import resolve_image


def resolve(root: Path, rel: str, allow_absolute: bool = False) -> Path | None:
    """``root/rel`` if it is an image file or band folder; for a name without suffix, the first
    ``root/rel.EXT`` that is (`skyeye.io.paths.resolve_image`). None when missing; raises
    `UnsafePathError` when ``rel`` is absolute (unless ``allow_absolute``) or leaves ``root``."""
    try:
        return resolve_image(rel, root, allow_absolute=allow_absolute, guess_suffix=True)  # type: ignore[return-value]
    except ImagePathError:
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
