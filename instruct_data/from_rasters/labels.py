"""Label sources -> one class map per source on the image grid.

A ``LabelLayer`` holds an int16 (H, W) map: 0 = unlabelled, k = ``classes[k - 1]``. Sources:
class rasters (a land-cover map, reprojected with nearest neighbour when its grid differs),
vector polygons (rasterised with ``rasterio.features.rasterize`` after reprojection to the image
CRS) and spectral-index masks (``spectral.py``; computed on a co-registered optical image for
SAR scenes, where cloudy optical pixels become unlabelled).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.warp import reproject, transform_geom

from instruct_data.from_rasters.sources import (
    load_array,
    load_image,
    reflectance_scale,
    resolve_path,
)
from instruct_data.from_rasters.spec import LabelSpec, SceneSpec, SpecError
from instruct_data.from_rasters.spectral import index_masks
from skyeye.io.raster import RasterImage

logger = logging.getLogger(__name__)
OTHER = "other surface"  # index layers: pixels that are none of the index classes


@dataclass
class LabelLayer:
    """One label source on the image grid.

    class_map: (H, W) int16, 0 = unlabelled, k = classes[k - 1].
    askable: per class, whether questions may be asked about it (False for background).
    description: how the labels were made (goes into each conversation's meta.label_source).
    negatives: whether a class absent from the map may be answered "no" (complete labels).
    """

    name: str
    kind: str
    class_map: np.ndarray
    classes: list[str]
    askable: list[bool]
    description: str
    negatives: bool = True


def _grid_matches(img: RasterImage, crs, transform, shape: tuple[int, int]) -> bool:
    if shape != img.data.shape[1:]:
        return False
    if img.transform is None or transform is None:
        return True  # same shape, no georeference to compare: assume the same grid
    return crs == img.crs and np.allclose(tuple(transform)[:6], tuple(img.transform)[:6], atol=1e-6)


def to_image_grid(arr: np.ndarray, crs, transform, img: RasterImage, what: str) -> np.ndarray:
    """Resample a (H', W') int map onto the image grid (nearest); 0 outside its footprint."""
    if _grid_matches(img, crs, transform, arr.shape):
        return arr
    if img.transform is None or img.crs is None or transform is None or crs is None:
        raise SpecError(
            f"{what}: shape {arr.shape} differs from the image {img.data.shape[1:]} and one of them "
            "has no georeference: give both a CRS/transform or use an array of the image's size"
        )
    out = np.zeros(img.data.shape[1:], dtype=np.int16)
    reproject(
        arr.astype(np.int16),
        out,
        src_transform=transform,
        src_crs=crs,
        dst_transform=img.transform,
        dst_crs=img.crs,
        resampling=Resampling.nearest,
        src_nodata=0,
        dst_nodata=0,
    )
    return out


def _table(classes: dict) -> tuple[list[str], dict]:
    """{code: name} -> (unique names in order, {code: index 1..K})."""
    names: list[str] = []
    for n in classes.values():
        if n not in names:
            names.append(n)
    return names, {code: names.index(n) + 1 for code, n in classes.items()}


def class_raster_layer(spec: LabelSpec, img: RasterImage, root: Path) -> LabelLayer:
    """A land-cover/water map with a class table {code: name}; other codes become unlabelled."""
    if spec.path is not None:
        path = resolve_path(root, spec.path)
        with rasterio.open(path) as src:
            raw = src.read(1)
            crs, transform = src.crs, (None if src.transform.is_identity else src.transform)
    else:
        path = resolve_path(root, spec.array)  # type: ignore[arg-type]
        raw = load_array(path, spec.key, spec.layout, spec.time_index)
        crs, transform = img.crs, img.transform
        if raw.shape != img.data.shape[1:]:
            raise SpecError(f"{path}: label array {raw.shape} != image {img.data.shape[1:]}")
    names, lut = _table(spec.classes)
    cmap = np.zeros(raw.shape, dtype=np.int16)
    for code, k in lut.items():
        cmap[raw == code] = k
    unknown = ~np.isin(raw, list(lut) + list(spec.nodata))
    if unknown.any():
        codes = sorted(int(c) for c in np.unique(raw[unknown]))[:10]
        logger.warning("%s: codes %s are not in the class table: left unlabelled", path, codes)
    cmap = to_image_grid(cmap, crs, transform, img, str(path))
    return LabelLayer(
        name=spec.name or f"raster-{path.stem}",
        kind="class_raster",
        class_map=cmap,
        classes=names,
        askable=[True] * len(names),
        description=f"class raster {path.name} (codes {dict(spec.classes)})",
        negatives=spec.negatives,
    )


def vector_layer(spec: LabelSpec, img: RasterImage, root: Path) -> LabelLayer:
    """Polygons with a class attribute, reprojected to the image CRS and rasterised on its grid."""
    try:
        import pyogrio
        import shapely
    except ImportError as err:
        raise SpecError(
            f"vector labels need pyogrio and shapely ({err}): pip install pyogrio shapely"
        ) from None
    path = resolve_path(root, spec.path)  # type: ignore[arg-type]
    if img.transform is None or img.crs is None:
        raise SpecError(f"{path}: vector labels need a georeferenced image (CRS + transform)")
    meta, _, wkb, fields = pyogrio.raw.read(path, layer=spec.layer, columns=[spec.class_field])
    if spec.class_field not in list(meta["fields"]):
        raise SpecError(f"{path}: no field {spec.class_field!r}; fields are {list(meta['fields'])}")
    values = fields[list(meta["fields"]).index(spec.class_field)]
    src_crs = meta["crs"]
    if src_crs is None:
        raise SpecError(f"{path}: the layer has no CRS: set one (e.g. ogr2ogr -a_srs)")
    geoms = shapely.from_wkb(wkb)
    names, lut = _table(spec.classes)
    h, w = img.data.shape[1:]
    cmap = np.zeros((h, w), dtype=np.int16)
    same_crs = rasterio.crs.CRS.from_user_input(src_crs) == img.crs
    n_used = 0
    # Draw classes in table order so later entries lie on top where polygons overlap.
    for code, k in lut.items():
        sel = [g for g, v in zip(geoms, values, strict=True) if g is not None and str(v) == code]
        if not sel:
            continue
        shapes = [g.__geo_interface__ for g in sel]
        if not same_crs:
            shapes = transform_geom(src_crs, img.crs, shapes)
        burned = rasterize(
            [(s, 1) for s in shapes], out_shape=(h, w), transform=img.transform, dtype="uint8"
        )
        cmap[burned == 1] = k
        n_used += len(sel)
    logger.info("%s: rasterised %d of %d polygons", path.name, n_used, len(geoms))
    return LabelLayer(
        name=spec.name or f"vector-{path.stem}"[:40],
        kind="vector",
        class_map=cmap,
        classes=names,
        askable=[True] * len(names),
        description=(
            f"vector polygons {path.name} (field {spec.class_field}) rasterised onto the image grid"
        ),
        negatives=spec.negatives,
    )


def index_layer(
    spec: LabelSpec, img: RasterImage, scene: SceneSpec, root: Path, cache: dict
) -> LabelLayer:
    """Water / vegetation / cloud from spectral indices (priority cloud > water > vegetation)."""
    other_img = scene.label_image is not None
    if other_img and "cloud" in spec.classes:
        raise SpecError(
            f"scene {scene.id}: 'cloud' from the label_image does not describe the "
            "image itself (SAR sees through clouds): drop 'cloud' from the classes"
        )
    if other_img:
        if "label_image" not in cache:
            cache["label_image"] = load_image(scene.label_image, root)  # type: ignore[arg-type]
        src = cache["label_image"]
        src_spec = scene.label_image
    else:
        src, src_spec = img, scene.image
    scale = reflectance_scale(src, src_spec)  # type: ignore[arg-type]
    wanted = list(spec.classes)
    try_cloud = other_img
    masks, rules = index_masks(
        src,
        wanted + (["cloud"] if try_cloud and _has_cloud_bands(src) else []),
        scale,
        spec.water_index,
        spec.thresholds,
    )
    classes = [c for c in ("cloud", "water", "vegetation") if c in wanted] + [OTHER]
    valid = np.isfinite(src.data).all(axis=0)
    cmap = np.where(valid, len(classes), 0).astype(np.int16)  # OTHER everywhere valid
    for c in ("vegetation", "water", "cloud"):  # lowest priority first
        if c in wanted:
            cmap[masks[c] & valid] = classes.index(c) + 1
    if try_cloud and "cloud" in masks:
        cmap[masks["cloud"]] = 0  # optical cloud: the ground under it is unknown
    where = (
        f"computed on the co-registered optical image {Path(src.path or '').name}"
        if other_img
        else "computed on the image itself"
    )
    desc = "spectral-index labels (rule-based, not ground truth): " + "; ".join(
        f"{c} = {rules[c]}" for c in wanted
    )
    desc += f"; {where}"
    if try_cloud and "cloud" in rules:
        desc += f"; optical cloud ({rules['cloud']}) left unlabelled"
    if other_img:
        cmap = to_image_grid(cmap, src.crs, src.transform, img, f"scene {scene.id} label_image")
    return LabelLayer(
        name=spec.name or "index-" + "-".join(wanted),
        kind="index",
        class_map=cmap,
        classes=classes,
        askable=[c != OTHER for c in classes],
        description=desc,
        negatives=spec.negatives,
    )


def _has_cloud_bands(img: RasterImage) -> bool:
    from instruct_data.from_rasters.spectral import band_index

    return all(band_index(img, r) is not None for r in ("blue", "green", "red"))


def build_layers(scene: SceneSpec, img: RasterImage, root: Path) -> list[LabelLayer]:
    """Every label source of ``scene`` as a LabelLayer on ``img``'s grid."""
    cache: dict = {}
    layers = []
    for spec in scene.labels:
        if spec.type == "class_raster":
            layers.append(class_raster_layer(spec, img, root))
        elif spec.type == "vector":
            layers.append(vector_layer(spec, img, root))
        else:
            layers.append(index_layer(spec, img, scene, root, cache))
    names = [la.name for la in layers]
    if len(set(names)) != len(names):
        raise SpecError(f"scene {scene.id}: label sources need distinct names, got {names}")
    return layers
