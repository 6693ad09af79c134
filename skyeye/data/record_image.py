"""A record's image -> `RasterImage`: the one reading of the unified format's image entries.

An image entry of a record (docs/instruction_format.md) gives `path` (a file, a band-per-file
folder, or a list of files, relative to an image root), and optionally `band_names`,
`wavelengths` (µm, `null` for a SAR band), `modality` ("sar") and `sensor` (a registered sensor
whose value scaling the image is read with: "rgb" for 8-bit photos saved as R, G, B tiles,
which band names alone would stretch per band). Training
(`skyeye.data.dataset`), the vision stage (`finetune.vision_stage`) and evaluation read them
here, so a record's image is read the same way wherever it is used. Paths go through
`skyeye.io.paths.resolve_image` (inside the root, existing, a file or a band folder).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from skyeye.io.paths import resolve_image
from skyeye.io.raster import RasterImage, read_raster

__all__ = ["read_record_image", "record_image_source"]


def record_image_source(
    path: str | Sequence[str], root: str | os.PathLike[str], *, allow_absolute: bool = False
) -> str | list[str]:
    """The checked file(s) or band folder of a record's image `path` under `root`.

    Raises `UnsafePathError` (absolute, or leaving the root) or `ImagePathError` (missing, a
    FIFO/device, a folder without band files).
    """
    found = resolve_image(path, root, allow_absolute=allow_absolute)
    return [str(p) for p in found] if isinstance(found, list) else str(found)


def read_record_image(
    image: Mapping[str, Any],
    root: str | os.PathLike[str],
    *,
    max_size: int | None = None,
    sar_wavelength: float | None = None,
    allow_absolute: bool = False,
) -> RasterImage:
    """Read one image entry of a record (`path`, `band_names`, `wavelengths`, `modality`,
    `sensor`).

    Args:
        image: the record's image entry.
        root: the folder relative paths are resolved against.
        max_size: longest side of the grid read (`read_raster`'s decimated read).
        sar_wavelength: the checkpoint's SAR placeholder (µm); needed only for a SAR picture
            without band names, which is conditioned on it.
        allow_absolute: accept an absolute `path` (refused by default).

    Returns:
        the image, data (C, H, W) float32 with NaN as nodata. Wavelengths are the record's when
        every band has one, else left to the band names (SAR bands: the image processor's
        placeholder).
    """
    source = record_image_source(image["path"], root, allow_absolute=allow_absolute)
    names = image.get("band_names")
    waves = image.get("wavelengths")
    kwargs: dict[str, Any] = {"max_size": max_size}
    if waves is not None and all(w is not None for w in waves):
        kwargs["wavelengths"] = [float(w) for w in waves]
    sar = image.get("modality") == "sar"
    if isinstance(source, list) and names is not None and len(names) != len(source):
        return _stack_files(source, list(names), kwargs.get("wavelengths"), max_size)
    if names is not None:
        kwargs["band_names"] = names
        if sar:
            kwargs["sensor"] = "sentinel-1"
    if image.get("sensor") is not None:
        kwargs["sensor"] = str(image["sensor"])
    raster = read_raster(source, **kwargs)
    if sar and names is None:
        # A SAR picture without band names (EarthMind's PNG renderings): its pixels are a display
        # stretch, so keep them as they are, but condition the tower on the checkpoint's SAR
        # placeholder wavelength instead of the RGB ones a PNG implies.
        if sar_wavelength is None:
            raise ValueError(
                "a SAR image needs the model's sar_wavelength placeholder; set "
                "data.sar_wavelength in the recipe (5.405 for DOFA v2 / DOFA-CLIP, 3.75 for DOFA v1)"
            )
        raster.wavelengths = [sar_wavelength] * raster.data.shape[0]
        raster.sensor = None
    return raster


def _stack_files(
    files: list[str], names: list[str], wavelengths: list[float] | None, max_size: int | None
) -> RasterImage:
    """Several multi-band files of one image (ChatEarthNet's PNG triplets), bands stacked.

    Read one by one and named by the record, as training always has: `read_raster`'s own
    stacking reads the same values but marks the image as an "rgb" photo, which the image
    processor then scales otherwise (pixel_values differed by up to 0.62 on random PNGs).
    """
    parts = [read_raster(f, max_size=max_size) for f in files]
    if len({p.data.shape[1:] for p in parts}) != 1:
        raise ValueError(f"the files of one image differ in size: {[p.shape for p in parts]}")
    data = np.concatenate([p.data for p in parts])
    if data.shape[0] != len(names):
        raise ValueError(f"{len(names)} band_names for {data.shape[0]} bands")
    return RasterImage(data=data, band_names=names, wavelengths=wavelengths, path=files[0])
