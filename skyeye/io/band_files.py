"""Band-per-file products (Sentinel-2 ``*_B02.jp2``, BigEarthNet ``*_VV.tif``) read onto one grid."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT

from skyeye.errors import RasterReadError
from skyeye.io.dates import acquisition_tag_date
from skyeye.io.gdal import ReadOptions
from skyeye.io.image import (
    RasterImage,
    band_name_from_filename,
    check_dtype,
    check_file,
    scaled_transform,
    target_shape,
)
from skyeye.io.policy import ReadPolicy, open_target
from skyeye.io.product_ids import sensor_from_product_id
from skyeye.io.sensors import get_sensor, sensors_matching_bands

logger = logging.getLogger(__name__)


def read_band_files(
    files: Sequence[Path],
    max_size: int | None,
    max_pixels: int,
    band_names: Sequence[str] | None,
    sensor: str | None,
    options: ReadOptions | None = None,
    *,
    policy: ReadPolicy | None = None,
) -> RasterImage:
    """Stack single-band files on the finest band's grid (or that grid shrunk to ``max_size``).

    options: GDAL decoding threads and block cache (default: every core, 128 MiB).
    policy: the files came from a request (`skyeye.io.policy`): each is checked before opening.

    Band names come from ``band_names`` (in the given file order) or from the file-name
    suffixes, and are then sorted in the sensor's band order when the sensor is known.
    Returns a RasterImage with data (C, H, W) float32, NaN = nodata.
    """
    files = [check_file(Path(f)) for f in files]
    label = str(files[0].parent)
    names, files = band_file_order(files, band_names, sensor)
    targets = [open_target(f, policy) for f in files]
    if policy is not None:
        for f, (_, _, driver) in zip(files, targets, strict=True):
            if driver is None:  # WebP: a photo format, never one band of a product
                raise RasterReadError(f"{f}: a band file must be a GeoTIFF or JPEG 2000")

    with rasterio.Env(**(options or ReadOptions()).gdal_env()), ExitStack() as stack:
        srcs = [stack.enter_context(rasterio.open(t, driver=d)) for t, _, d in targets]
        if policy is not None:
            for f, src in zip(files, srcs, strict=True):
                itemsize = np.dtype(src.dtypes[0]).itemsize
                policy.check_size(src.width, src.height, src.count, itemsize, str(f))
        check_band_files(label, files, srcs)
        # The finest band defines the grid (10 m for Sentinel-2).
        ref = min(srcs, key=lambda s: abs(s.transform.a * s.transform.e))
        h, w = ref.height, ref.width
        out_h, out_w = target_shape(h, w, max_size, max_pixels, label)
        transform = scaled_transform(ref.transform, (h, w), (out_h, out_w))
        data = np.empty((len(srcs), out_h, out_w), dtype=np.float32)
        for i, src in enumerate(srcs):
            data[i] = read_band_window(src, ref.crs, transform, (out_h, out_w))
        nodatas = {src.nodata for src in srcs}
        return RasterImage(
            data=data,
            band_names=names,
            crs=ref.crs,
            transform=None if ref.transform.is_identity else transform,
            nodata=nodatas.pop() if len(nodatas) == 1 else None,
            source_shape=(h, w),
            datetime=acquisition_tag_date(ref),
            extra={"files": [str(f) for f in files], "dtype": ref.dtypes[0]},
        )


def check_band_files(label: str, files: Sequence[Path], srcs: Sequence[DatasetReader]) -> None:
    """Raise unless every opened band file of one product holds one band of a readable dtype and
    all are in one CRS (naming which file is in which; a file without georeference among
    georeferenced ones is named as such). The reader and whole scenes both check here."""
    by_crs: dict[str, list[str]] = {}
    for f, src in zip(files, srcs, strict=True):
        if src.count != 1:
            raise RasterReadError(
                f"{f}: has {src.count} bands, but a band-per-file product needs one band per "
                "file: read the file on its own instead"
            )
        check_dtype(src.dtypes[0], str(f))
        by_crs.setdefault(str(src.crs) if src.crs else "no georeference", []).append(f.name)
    if len(by_crs) < 2:
        return
    listed = "; ".join(f"{crs}: {', '.join(names)}" for crs, names in sorted(by_crs.items()))
    if "no georeference" in by_crs:
        raise RasterReadError(
            f"{label}: some band files have no georeference and others do ({listed}): use band "
            "files that all carry their CRS (the product's full-resolution files, not previews), "
            "or read one file on its own"
        )
    raise RasterReadError(
        f"{label}: band files are in different CRSs ({listed}): reproject them to one CRS first "
        "(gdalwarp -t_srs)"
    )


def band_file_order(
    files: Sequence[Path], band_names: Sequence[str] | None, sensor: str | None
) -> tuple[list[str], list[Path]]:
    """Band names of single-band files (given, or from the file-name suffixes) and the files
    sorted in the sensor's band order when the sensor is known. Returns (names, files)."""
    files = [Path(f) for f in files]
    label = str(files[0].parent)
    if band_names is not None:
        if len(band_names) != len(files):
            raise RasterReadError(
                f"{label}: got {len(band_names)} band names for {len(files)} band files: pass one "
                "name per file, in the order of the files"
            )
        names = [str(n) for n in band_names]
    else:
        names = []
        for f in files:
            name = band_name_from_filename(f)
            if name is None:
                raise RasterReadError(
                    f"{f}: cannot tell the band from the file name (expected a suffix like "
                    "'_B02' or '_VV'): rename the file, or pass band_names in Python"
                )
            names.append(name)
        if len(set(n.upper() for n in names)) != len(names):
            raise RasterReadError(
                f"{label}: several files have the same band suffix ({names}): pass the files "
                "of one product only"
            )
        # A product folder's sensor (given, or named by the USGS product ID in its path) keeps
        # only its own spectral bands: a Landsat folder's BQA (quality bits) and B8
        # (panchromatic, on a finer grid that would become the stack's) are left out, said.
        named = sensor or sensor_from_product_id(label)
        if named is not None:
            own = get_sensor(named)
            kept = [(n, f) for n, f in zip(names, files, strict=True) if own.find_band(n)]
            if kept and len(kept) < len(names):
                left_out = [n for n in names if own.find_band(n) is None]
                logger.warning("%s: %s are not %s bands: left out", label, left_out, named)
                names, files = [n for n, _ in kept], [f for _, f in kept]
        order_sensor = named
        if order_sensor is None:
            matches = sensors_matching_bands(names)
            order_sensor = matches[0] if matches else None
        s = get_sensor(order_sensor) if order_sensor is not None else None
        if s is not None and all(s.find_band(n) is not None for n in names):
            pairs = sorted(zip(names, files, strict=True), key=lambda p: s.band_index(p[0]))
        else:
            # No sensor order: numbers in names in numeric order (B1, B2, ..., B10, not B1, B10,
            # B11, B2), the order people type --wavelengths in.
            pairs = sorted(zip(names, files, strict=True), key=lambda p: _natural(p[0]))
        names, files = [p[0] for p in pairs], [p[1] for p in pairs]
    return list(names), list(files)


def _natural(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(t)) if t.isdigit() else (1, t.lower()) for t in re.findall(r"\d+|\D+", name)]


def read_band_window(
    src: rasterio.DatasetReader,
    crs: rasterio.crs.CRS,
    transform: Affine,
    shape: tuple[int, int],
) -> np.ndarray:
    """Band 1 of ``src`` resampled onto the grid (crs, transform, shape), NaN = nodata.

    Same footprint: a decimated/upsampled read (uses overviews). Otherwise a warped VRT.
    Returns (H, W) float32.
    """
    out_h, out_w = shape
    src_res = abs(src.transform.a)
    dst_res = abs(transform.a)
    resampling = Resampling.average if src_res < dst_res * 0.999 else Resampling.bilinear
    if np.isclose(src_res, dst_res) and np.isclose(abs(src.transform.e), abs(transform.e)):
        resampling = Resampling.nearest
    dst_bounds = rasterio.transform.array_bounds(out_h, out_w, transform)
    same = src.crs == crs and np.allclose(src.bounds, dst_bounds, atol=abs(dst_res) * 1e-3)
    if same:
        band = src.read(1, out_shape=(out_h, out_w), resampling=resampling, out_dtype="float32")
    else:
        with WarpedVRT(
            src,
            crs=crs,
            transform=transform,
            width=out_w,
            height=out_h,
            resampling=resampling,
            src_nodata=src.nodata,
            nodata=np.nan,
            dtype="float32",
        ) as vrt:
            band = vrt.read(1)
    if src.nodata is not None and not np.isnan(src.nodata):
        band[band == np.float32(src.nodata)] = np.nan
    band[~np.isfinite(band)] = np.nan
    return band
