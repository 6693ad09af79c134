"""Instance counts from a class raster, with sizes in hectares: eo-learn Slovenia land cover.

"How many water bodies larger than 1 ha?" is answered by the connected regions (8-connected,
as `skyeye.grounding.instances` counts on the chat's masks) of the class in the land-cover
raster, of at least the asked area (10 m pixels: 1 ha = 100 pixels). The answer looks first,
the way the chat counts: ``<p>water</p> [SEG] There are 2 water bodies larger than 1 ha.`` with
the class mask. The four clear dates (1-4) are written as GeoTIFFs (reflectance x 10000, the
scaling the image processor expects of Sentinel-2) under ``OUT/images/eolearn-slovenia/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from instruct_data.bands import s2_wavelengths
from instruct_data.objects import licence_meta
from instruct_data.objects.scenes import EUROSAT_BANDS
from instruct_data.schema import Conversation, ImageRef, Mask, Turn
from skyeye.grounding.instances import label_instances

__all__ = ["region_records"]

DATASET = "eolearn-slovenia"
#: LULC code -> (mask class, what the question calls its instances).
CLASSES = {5: ("water", "water bodies"), 2: ("forest", "forest patches"),
           1: ("cultivated land", "fields")}  # fmt: skip
SIZES_HA = (0.5, 1.0, 5.0)
PIXEL_M = 10.0
CRS = "EPSG:32633"
BOUNDS = (465181.0, 5079245.0, 466181.0, 5080255.0)  # left, bottom, right, top (the recipe's)


def _write_tif(path: Path, data: np.ndarray) -> None:
    import rasterio
    from rasterio.transform import from_bounds

    _, h, w = data.shape
    tmp = path.with_suffix(".tmp.tif")
    profile = {"driver": "GTiff", "dtype": "float32", "count": data.shape[0], "height": h,
               "width": w, "crs": CRS, "transform": from_bounds(*BOUNDS, w, h)}  # fmt: skip
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
        dst.descriptions = tuple(EUROSAT_BANDS)
    tmp.replace(path)


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def region_records(
    root: Path, out: Path, dates: tuple[int, ...] = (1, 2, 3, 4)
) -> Iterator[Conversation]:
    """Count records for every date x class x size of the Slovenia patch."""
    base = root / DATASET / "example_data"
    scenes = np.load(base / "REFERENCE_SCENES.npy")  # (T, H, W, 13) reflectance 0-1
    lulc = np.load(base / "TestEOPatch" / "mask_timeless" / "LULC.npy")[..., 0]  # (H, W)
    if scenes.shape[1:3] != lulc.shape:
        raise ValueError(f"{base}: image {scenes.shape[1:3]} and land cover {lulc.shape} differ")
    folder = out / "images" / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    meta0 = licence_meta(DATASET)
    for t in dates:
        rel = f"images/{DATASET}/slovenia_t{t}.tif"
        if not (out / rel).exists():
            _write_tif(out / rel, np.moveaxis(scenes[t], -1, 0) * 10000.0)
        image = ImageRef(path=rel, modality="multispectral", band_names=EUROSAT_BANDS,
                         wavelengths=s2_wavelengths(EUROSAT_BANDS), size=list(lulc.shape))  # fmt: skip
        for code, (cls, words) in CLASSES.items():
            mask = lulc == code
            labels = label_instances(mask, min_pixels=1, split_touching=False)
            sizes = np.bincount(labels.ravel())[1:] * PIXEL_M**2 / 1e4  # ha per region
            for ha in SIZES_HA:
                n = int((sizes >= ha).sum())
                verb = "is" if n == 1 else "are"
                answer = f"<p>{cls}</p> [SEG] There {verb} {n} {words} larger than {ha:g} ha."
                prompt = f"How many {words} larger than {ha:g} ha are there in this image?"
                yield Conversation(
                    id=f"{DATASET}:t{t}:{cls}:{ha:g}ha",
                    source=DATASET,
                    task="vqa",
                    images=[image],
                    turns=[
                        Turn("user", f"<image>\n{prompt}"),
                        Turn("assistant", answer, masks=[Mask(seg_index=0, rle=_rle(mask))]),
                    ],
                    meta={**meta0, "gen_task": "count", "count": n, "min_ha": ha, "class": cls},
                )
