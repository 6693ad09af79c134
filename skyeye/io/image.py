"""`RasterImage` and the grid helpers shared by the raster readers (`raster`, `band_files`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from skyeye.errors import RasterReadError

_BAND_SUFFIX = re.compile(r"[_\-.]([A-Za-z0-9]+)$")


@dataclass
class RasterImage:
    """A raster ready for the image processor.

    data: (C, H, W) float32, nodata pixels are NaN.
    transform: affine transform of ``data``'s grid (accounts for any decimation), or None.
    source_shape: (H, W) of the source at full resolution (defaults to data's H, W).
    wavelengths: µm per band, or None when unknown (the processor then resolves SAR bands
        with its ``sar_wavelength`` or asks for them).
    scene_id / datetime: the scene's id and acquisition time (ISO 8601) when the source says so
        (a STAC item), recorded in outputs.
    extra: reader details (source dtype, driver, band files) for logging and debugging.
    """

    data: np.ndarray
    band_names: list[str]
    wavelengths: list[float] | None = None
    sensor: str | None = None
    crs: rasterio.crs.CRS | None = None
    transform: Affine | None = None
    nodata: float | None = None
    source_shape: tuple[int, int] | None = None
    path: str | None = None
    scene_id: str | None = None
    datetime: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"RasterImage.data must be (C, H, W), got shape {self.data.shape}")
        if len(self.band_names) != self.data.shape[0]:
            raise ValueError(
                f"{len(self.band_names)} band names for {self.data.shape[0]} bands: give one per band"
            )
        if self.source_shape is None:
            self.source_shape = (int(self.data.shape[1]), int(self.data.shape[2]))

    @property
    def valid_mask(self) -> np.ndarray:
        """(H, W) bool: True where every band holds a finite value."""
        return np.isfinite(self.data).all(axis=0)

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.data.shape
        return (c, h, w)


def check_file(path: Path) -> Path:
    if not path.exists():
        raise RasterReadError(f"{path}: no such file: check the path")
    if not path.is_file():
        raise RasterReadError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise RasterReadError(f"{path}: the file is empty (0 bytes): re-download or re-export it")
    return path


def band_name_from_filename(path: str | os.PathLike) -> str | None:
    """Band name from a file name: ``T33UUU_..._B8A.jp2`` -> ``"B8A"``, ``x_VV.tif`` -> ``"VV"``.

    A name that is a band itself (``B01.jp2``, the Sentinel-2 tiles on AWS) and the last part
    that names a band of a registered sensor (``LC80130312015295LGN00_B1_toa.tif`` -> ``"B1"``,
    ``..._B02_10m.jp2`` -> ``"B02"``) come first; else the last suffix, whatever it is.
    """
    from skyeye.io.sensors import is_band_name  # sensors is the band table; it imports no io

    stem = Path(path).stem
    if is_band_name(stem):
        return stem
    for part in reversed(re.split(r"[_\-.]", stem)[1:]):
        if part and is_band_name(part):
            return part
    m = _BAND_SUFFIX.search(stem)
    return m.group(1) if m else None


def target_shape(
    height: int, width: int, max_size: int | None, max_pixels: int, label: str
) -> tuple[int, int]:
    """(H', W') of the grid to read: full size, or shrunk so max(H', W') <= max_size."""
    if max_size is None:
        if height * width > max_pixels:
            raise RasterReadError(
                f"{label}: {height}x{width} px is larger than max_pixels={max_pixels}: pass "
                "max_size (e.g. max_size=1024) to read it at reduced resolution"
            )
        return height, width
    if max(height, width) <= max_size:
        return height, width
    scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def scaled_transform(
    transform: Affine, src_shape: tuple[int, int], out_shape: tuple[int, int]
) -> Affine:
    """Transform of the same footprint sampled on ``out_shape`` instead of ``src_shape``."""
    return transform @ Affine.scale(src_shape[1] / out_shape[1], src_shape[0] / out_shape[0])


def check_dtype(dtype: str, label: str) -> None:
    kind = np.dtype(dtype).kind if not dtype.startswith("complex") else "c"
    if kind not in "uifb":
        raise RasterReadError(
            f"{label}: pixel type {dtype} is not supported (complex/SLC data): convert it to "
            "real values first (e.g. amplitude or dB backscatter)"
        )
