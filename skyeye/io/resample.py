"""Resampling: nodata-aware resizing of (C, H, W) float arrays whose invalid pixels are NaN, and
the one rule for resizing label masks."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def resize_with_nodata(data: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize that ignores NaN pixels.

    Normalised convolution: resize(values * valid) / resize(valid), so nodata never bleeds into
    valid pixels. Output pixels that see no valid input stay NaN.

    data: (C, H, W) float array, NaN = nodata. Returns (C, out_h, out_w) float32.
    """
    if data.ndim != 3:
        raise ValueError(f"expected a (C, H, W) array, got shape {data.shape}")
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size must be positive, got {out_h}x{out_w}")
    c, h, w = data.shape
    if (h, w) == (out_h, out_w):
        return data.astype(np.float32, copy=True)
    valid = np.isfinite(data)
    values = torch.from_numpy(np.where(valid, data, 0.0).astype(np.float32))[None]
    # Bands valid on the same pixels (the usual nodata) share one weight plane: each channel is
    # resized on its own, so one plane gives the same numbers at a 1/C of the cost.
    same = c > 1 and bool((valid == valid[:1]).all())
    weight = torch.from_numpy(valid[:1] if same else valid).to(torch.float32)[None]
    # antialias=True averages over the footprint when shrinking, like GDAL's "average".
    kw: dict[str, Any] = dict(
        size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True
    )
    num = F.interpolate(values, **kw)[0]
    den = F.interpolate(weight, **kw)[0]
    out = torch.where(den > 1e-6, num / den.clamp_min(1e-6), torch.full_like(num, float("nan")))
    return out.numpy().reshape(c, out_h, out_w)


def resize_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize of an (h, w) label mask to ``shape`` (H, W), pixel-centre aligned.

    The one rule for masks everywhere (training targets, evaluation scoring, validation IoU), so
    a score is measured on the grid the model was trained on. Labels are never blended: output
    pixel (i, j) takes input pixel (floor((i + 0.5) h / H), floor((j + 0.5) w / W)), as GDAL's
    and torchgeo's nearest resampling of label rasters does.

    mask: (h, w) array, read as bool. Returns (H, W) bool.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (H, W), got shape {mask.shape}")
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"the output shape must be two positive sizes, got {tuple(shape)}")
    if mask.shape == tuple(shape):
        return mask
    h, w = mask.shape
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(int), h - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(int), w - 1)
    return mask[rows[:, None], cols[None, :]]
