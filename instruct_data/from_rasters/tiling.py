"""Tiles of a scene: windows, flips / 90° rotations (with a matching affine), band subsets, GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

# Target wavelengths (µm) of each band subset, in output band order. ChatEarthNet's 9 bands:
# B04 B03 B02 B05 B06 B07 B08 B11 B12.
BAND_SUBSETS: dict[str, list[float] | None] = {
    "all": None,
    "rgb": [0.665, 0.560, 0.490],
    "rgbn": [0.665, 0.560, 0.490, 0.842],
    "s2-9": [0.665, 0.560, 0.490, 0.705, 0.740, 0.783, 0.842, 1.610, 2.190],
    "s2-13": [
        0.443,
        0.490,
        0.560,
        0.665,
        0.705,
        0.740,
        0.783,
        0.842,
        0.865,
        0.945,
        1.375,
        1.610,
        2.190,
    ],
}
WAVELENGTH_TOL = 0.035  # µm: Landsat NIR 0.83-0.865 still serves as "NIR"
AUG_OPS = ("fliplr", "flipud", "rot90", "rot180", "rot270", "transpose", "antitranspose")


def get_band_subset(name: str) -> list[float] | None:
    """Target wavelengths of a named subset (None: all bands); ValueError lists the names."""
    if name not in BAND_SUBSETS:
        raise ValueError(f"unknown band subset {name!r}; known: {list_band_subsets()}")
    return BAND_SUBSETS[name]


def list_band_subsets() -> list[str]:
    return list(BAND_SUBSETS)


def tile_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets covering ``length``: every ``stride``, plus one flush with the end."""
    if length < size:
        return []
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def tile_windows(height: int, width: int, size: int, stride: int) -> list[tuple[int, int]]:
    """(row, col) of the top-left corner of each size x size tile."""
    return [
        (r, c) for r in tile_starts(height, size, stride) for c in tile_starts(width, size, stride)
    ]


def select_bands(wavelengths: list[float | None] | None, subset: str) -> list[int] | None:
    """Indices of the bands nearest each target wavelength of ``subset`` (in subset order),
    None when the image lacks one of them (or has no wavelengths)."""
    targets = get_band_subset(subset)
    if targets is None:
        return list(range(len(wavelengths or [])))
    if not wavelengths:
        return None
    out = []
    for t in targets:
        d = [abs(w - t) if w is not None else 1e9 for w in wavelengths]
        i = int(np.argmin(d))
        if d[i] > WAVELENGTH_TOL or i in out:
            return None
        out.append(i)
    return out


def _op_matrix(op: str, h: int, w: int) -> Affine:
    """Affine taking (col, row) of the augmented array to (col, row) of the input array."""
    return {
        "fliplr": Affine(-1, 0, w, 0, 1, 0),
        "flipud": Affine(1, 0, 0, 0, -1, h),
        # np.rot90 (counter-clockwise): out[i, j] = in[j, w - 1 - i]
        "rot90": Affine(0, -1, w, 1, 0, 0),
        "rot180": Affine(-1, 0, w, 0, -1, h),
        "rot270": Affine(0, 1, 0, -1, 0, h),
        "transpose": Affine(0, 1, 0, 1, 0, 0),
        "antitranspose": Affine(0, -1, w, -1, 0, h),
    }[op]


def augment(
    arr: np.ndarray, op: str | None, transform: Affine | None = None
) -> tuple[np.ndarray, Affine | None]:
    """Apply ``op`` to the last two axes of ``arr`` (..., H, W); also return the transform that
    keeps every pixel at its true map position (rows no longer run north to south)."""
    if op is None:
        return arr, transform
    h, w = arr.shape[-2:]
    out = {
        "fliplr": lambda a: a[..., :, ::-1],
        "flipud": lambda a: a[..., ::-1, :],
        "rot90": lambda a: np.rot90(a, 1, axes=(-2, -1)),
        "rot180": lambda a: np.rot90(a, 2, axes=(-2, -1)),
        "rot270": lambda a: np.rot90(a, 3, axes=(-2, -1)),
        "transpose": lambda a: np.swapaxes(a, -1, -2),
        "antitranspose": lambda a: np.rot90(np.swapaxes(a, -1, -2), 2, axes=(-2, -1)),
    }[op](arr)
    new_t = transform @ _op_matrix(op, h, w) if transform is not None else None
    return np.ascontiguousarray(out), new_t


def allowed_ops(flips: bool, rot90: bool) -> list[str]:
    """Augmentations the options allow (flips: mirror images; rot90: rotations by 90/180/270)."""
    ops: list[str] = []
    if flips:
        ops += ["fliplr", "flipud"]
    if rot90:
        ops += ["rot90", "rot180", "rot270"]
    if flips and rot90:
        ops += ["transpose", "antitranspose"]
    return ops


def is_north_up(transform: Affine | None) -> bool:
    """True when rows run north to south and columns west to east."""
    return (
        transform is not None
        and abs(transform.b) < 1e-12
        and abs(transform.d) < 1e-12
        and transform.a > 0
        and transform.e < 0
    )


def write_tile(
    path: Path,
    data: np.ndarray,
    band_names: list[str],
    crs,
    transform: Affine | None,
) -> None:
    """Write (C, H, W) float32 as a deflate GeoTIFF, NaN nodata, band descriptions = names;
    under a temporary name, renamed when complete."""
    import warnings

    from skyeye.atomic import atomic_path

    c, h, w = data.shape
    profile = dict(
        driver="GTiff",
        height=h,
        width=w,
        count=c,
        dtype="float32",
        nodata=float("nan"),
        compress="deflate",
        predictor=3,
    )
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    with warnings.catch_warnings(), atomic_path(path) as tmp:
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data.astype(np.float32))
            for i, n in enumerate(band_names, 1):
                dst.set_band_description(i, n)
