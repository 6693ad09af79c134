"""Zoomed-out copies of a scene: block-averaged pixels and majority-vote labels.

A chat user shows the model a whole scene, which the image processor shrinks to the tower's input
size (a 512 px Sentinel-2 crop reaches a 128 px tower at ~40 m per pixel). Tiles cut at the
native 10 m grid never show the model that scale, so a scene may also be tiled after averaging
``factor`` x ``factor`` pixel blocks (``scales`` in the spec).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from affine import Affine

from instruct_data.from_rasters.labels import LabelLayer
from skyeye.io.raster import RasterImage


def block_mean(data: np.ndarray, factor: int) -> np.ndarray:
    """(C, H, W) -> (C, H // f, W // f): mean of each f x f block, NaN where a block is all NaN.

    Rows/columns beyond the last whole block are dropped.
    """
    c, h, w = data.shape
    hh, ww = h // factor, w // factor
    blocks = data[:, : hh * factor, : ww * factor].reshape(c, hh, factor, ww, factor)
    finite = np.isfinite(blocks)
    total = np.where(finite, blocks, 0.0).sum(axis=(2, 4), dtype=np.float64)
    count = finite.sum(axis=(2, 4))
    out = np.full((c, hh, ww), np.nan, dtype=np.float32)
    np.divide(total, count, out=out, where=count > 0, casting="unsafe")
    return out


def block_majority(class_map: np.ndarray, factor: int, n_classes: int) -> np.ndarray:
    """(H, W) int class map (0 = unlabelled) -> (H // f, W // f): each block's most common class.

    A block stays unlabelled (0) when fewer than half of its pixels carry a label, so a zoomed
    label never claims more than the source map does.
    """
    h, w = class_map.shape
    hh, ww = h // factor, w // factor
    blocks = class_map[: hh * factor, : ww * factor].reshape(hh, factor, ww, factor)
    counts = np.stack([(blocks == k).sum(axis=(1, 3)) for k in range(1, n_classes + 1)])
    best = counts.argmax(axis=0) + 1
    labelled = counts.sum(axis=0)
    return np.where(labelled * 2 >= factor * factor, best, 0).astype(class_map.dtype)


def zoom_out(
    img: RasterImage, layers: list[LabelLayer], factor: int
) -> tuple[RasterImage, list[LabelLayer]]:
    """The scene and its label layers at 1/``factor`` of the resolution (factor 1: unchanged)."""
    if factor < 1:
        raise ValueError(f"zoom factor must be >= 1, got {factor}")
    if factor == 1:
        return img, layers
    data = block_mean(img.data, factor)
    transform = img.transform @ Affine.scale(factor) if img.transform is not None else None
    small = dataclasses.replace(img, data=data, transform=transform)
    zoomed = [
        dataclasses.replace(la, class_map=block_majority(la.class_map, factor, len(la.classes)))
        for la in layers
    ]
    return small, zoomed
