"""Save the masks of a chat answer: a PNG of each mask over the image, and a GeoTIFF of the mask
when the image is georeferenced (what the terminal chat writes; the demo offers the same files)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from PIL import Image

from skyeye.chat.session import ChatReply
from skyeye.grounding.geo import transform_for_shape, write_mask_geotiff
from skyeye.io.raster import RasterImage
from skyeye.render.overlay import draw_overlay
from skyeye.render.previews import render_preview

logger = logging.getLogger(__name__)


def _slug(text: str | None, fallback: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text or "").strip("-").lower()
    return s[:40] or fallback


def save_reply_masks(
    reply: ChatReply, images: list[RasterImage], out_dir: str | Path, prefix: str = "answer"
) -> list[Path]:
    """Write ``<prefix>_mask<k>_<phrase>.png`` (the mask drawn over the image preview) and, for a
    georeferenced image, ``….tif`` (uint8 mask, 1 = inside, on the image's footprint) per mask.

    reply.masks: (H, W) bool on the read grid of ``images[reply.mask_images[k]]``.
    Returns the paths written (none when the reply has no mask).
    """
    out, written = Path(out_dir), []
    for k, mask in enumerate(reply.masks):
        index = reply.mask_images[k] if k < len(reply.mask_images) else len(images) - 1
        image = images[index]
        phrase = reply.mask_phrases[k] if k < len(reply.mask_phrases) else None
        stem = f"{prefix}_mask{k + 1}_{_slug(phrase, 'mask')}"
        out.mkdir(parents=True, exist_ok=True)
        picture = draw_overlay(render_preview(image), masks=[mask], mask_phrases=[phrase])
        png = out / f"{stem}.png"
        Image.fromarray(picture).save(png)
        written.append(png)
        if image.transform is not None and image.crs is not None:
            tif = out / f"{stem}.tif"
            h, w = image.data.shape[1:]
            transform = transform_for_shape(image.transform, (h, w), tuple(np.shape(mask)))
            write_mask_geotiff(tif, mask, transform=transform, crs=image.crs)
            written.append(tif)
    return written
