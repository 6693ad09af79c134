"""The examples gallery: real rasters bundled in the repository's `examples/` folder.

Each entry names its file, what it shows, a question worth asking and its licence (the full
attribution is `examples/ATTRIBUTION.md`). Thumbnails are rendered once per process with the
same previews the app shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from skyeye.io.raster import RasterReadError, read_raster
from skyeye.render.previews import render_preview

logger = logging.getLogger(__name__)

#: The repository's examples folder (present in a clone, not in an installed wheel).
DEFAULT_EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
THUMBNAIL_SIZE = 256


@dataclass(frozen=True)
class Example:
    """A bundled example raster."""

    file: str
    title: str
    question: str
    licence: str


EXAMPLES: dict[str, Example] = {
    "sentinel-2": Example(
        "sentinel2_berlin_l1c.tif",
        "Sentinel-2 L1C, 13 bands, west of Berlin (2017-02-16)",
        "Is there water in this image?",
        "Copernicus Sentinel data 2017 (free and open); eo-box sample data, MIT",
    ),
    "sentinel-1": Example(
        "sentinel1_vv_vh.tif",
        "Sentinel-1 SAR, VV + VH in dB (BigEarthNet patch, 2017-06-13)",
        "What land cover does this radar image show?",
        "BigEarthNet, CDLA-Permissive-1.0; contains modified Copernicus Sentinel data 2017",
    ),
    "naip": Example(
        "naip_rgbn.tif",
        "NAIP aerial R, G, B, NIR, North Dakota prairie potholes (2020-08-31)",
        "How many lakes do you see?",
        "USDA NAIP, US public domain; opengeos/data, MIT",
    ),
}


def available_examples(folder: Path) -> list[tuple[str, Path]]:
    """(name, path) of the registered examples whose files exist in `folder`."""
    return [(n, folder / e.file) for n, e in EXAMPLES.items() if (folder / e.file).is_file()]


def render_thumbnails(folder: Path, out_dir: Path) -> list[tuple[str, Path, str]]:
    """Write a PNG thumbnail per available example; returns (name, png, caption) triples."""
    out_dir.mkdir(parents=True, exist_ok=True)
    thumbs = []
    for name, path in available_examples(folder):
        example = EXAMPLES[name]
        try:
            image = read_raster(path, max_size=THUMBNAIL_SIZE)
        except RasterReadError as err:
            logger.warning("example %s skipped: %s", path, err)
            continue
        rgb: np.ndarray = render_preview(image)
        png = out_dir / f"{name}.png"
        Image.fromarray(rgb).save(png)
        thumbs.append((name, png, f"{example.title}. {example.licence}"))
    return thumbs
