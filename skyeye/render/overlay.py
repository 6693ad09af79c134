"""Draw an answer's boxes and masks, each with its phrase, over an image preview."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from skyeye.grounding.parse import GroundedBox, box_corners

logger = logging.getLogger(__name__)

# Colour-blind-friendly palette (Okabe-Ito), one colour per box / mask in answer order.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
)
MASK_ALPHA = 0.45
#: Small rasters (a 120 px Sentinel-1 patch) are enlarged to at least this size so labels stay legible.
MIN_DISPLAY_SIZE = 512


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def display_scale(shape: tuple[int, int]) -> int:
    """Integer enlargement applied to an (H, W) preview before drawing."""
    return max(1, math.ceil(MIN_DISPLAY_SIZE / max(shape)))


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, colour, font) -> None:
    x, y = xy
    left, top, right, bottom = draw.textbbox((x, y), text, font=font)
    pad = 2
    # Keep the label inside the picture.
    width, height = draw.im.size
    dx = min(0.0, width - (right + pad)) - min(0.0, left - pad)
    dy = min(0.0, height - (bottom + pad)) - min(0.0, top - pad)
    box = (left - pad + dx, top - pad + dy, right + pad + dx, bottom + pad + dy)
    draw.rectangle(box, fill=(0, 0, 0))
    draw.text((x + dx, y + dy), text, fill=colour, font=font)


def draw_overlay(
    preview: np.ndarray,
    boxes: Sequence[GroundedBox] = (),
    masks: Sequence[np.ndarray] = (),
    mask_phrases: Sequence[str | None] = (),
) -> np.ndarray:
    """The preview with masks (translucent fill) and boxes (outlines), each labelled.

    preview: (H, W, 3) uint8 on the image's read grid. boxes: normalised 0..1. masks: (H, W)
    bool on the same grid (a mask on another grid is resized with nearest neighbour).
    Returns (H*s, W*s, 3) uint8, s = `display_scale((H, W))`.
    """
    if preview.ndim != 3 or preview.shape[2] != 3 or preview.dtype != np.uint8:
        raise ValueError(f"preview must be (H, W, 3) uint8, got {preview.shape} {preview.dtype}")
    h, w = preview.shape[:2]
    scale = display_scale((h, w))
    base = Image.fromarray(preview).resize((w * scale, h * scale), Image.Resampling.NEAREST)
    out = np.asarray(base, dtype=np.float32).copy()
    labels: list[tuple[tuple[float, float], str, tuple[int, int, int]]] = []
    for k, mask in enumerate(masks):
        colour = PALETTE[k % len(PALETTE)]
        small = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255)
        m = np.asarray(small.resize(base.size, Image.Resampling.NEAREST)) > 0
        out[m] = (1 - MASK_ALPHA) * out[m] + MASK_ALPHA * np.array(colour, dtype=np.float32)
        phrase = mask_phrases[k] if k < len(mask_phrases) else None
        if m.any():
            rows, cols = np.nonzero(m)
            labels.append(
                ((float(cols.min()), float(rows.min())), phrase or f"mask {k + 1}", colour)
            )
    picture = Image.fromarray(out.round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    font = _font(max(12, picture.size[1] // 36))
    line = max(2, picture.size[1] // 256)
    for k, box in enumerate(boxes):
        colour = PALETTE[(len(masks) + k) % len(PALETTE)]
        corners = box_corners(box, width=picture.size[0], height=picture.size[1])
        draw.polygon([tuple(p) for p in corners], outline=colour, width=line)
        x = min(p[0] for p in corners)
        y = min(p[1] for p in corners)
        labels.append(((x + line, y + line), box.phrase or f"box {k + 1}", colour))
    for xy, text, colour in labels:
        _label(draw, xy, text, colour, font)
    return np.asarray(picture)
