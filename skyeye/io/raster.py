"""Raster input: PNG/JPG photos, GeoTIFF/JP2 with any band count, and band-per-file products.

Everything is read straight into a (C, H, W) float32 array with nodata as NaN, together with the
georeference (CRS, transform of the returned grid), band names and, when they can be known,
wavelengths. Large rasters are read at reduced resolution through GDAL overviews / decimated
reads (``out_shape``), so the full-resolution array is never materialised.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError

from skyeye.errors import RasterReadError
from skyeye.io.band_files import read_band_files
from skyeye.io.band_metadata import apply_band_metadata
from skyeye.io.dates import acquisition_tag_date, date_from_paths
from skyeye.io.gdal import ReadOptions, read_decimated
from skyeye.io.image import (
    RasterImage,
    check_dtype,
    scaled_transform,
    target_shape,
)
from skyeye.io.photo import read_photo
from skyeye.io.policy import ReadPolicy, open_target
from skyeye.io.sensors import (
    get_sensor,
)
from skyeye.io.stac import is_stac_file, read_stac_item

logger = logging.getLogger(__name__)

#: Rasters with more pixels (H x W) than this need an explicit ``max_size``.
DEFAULT_MAX_PIXELS = 4096 * 4096
#: Extensions read with PIL (photos); everything else goes through GDAL.
PHOTO_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
#: Extensions collected from a band-per-file folder.
BAND_FILE_EXTENSIONS = {".tif", ".tiff", ".jp2"}


def read_raster(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    max_size: int | None = None,
    band_names: Sequence[str] | None = None,
    wavelengths: Sequence[float] | None = None,
    sensor: str | None = None,
    sar_wavelength: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    read_options: ReadOptions | None = None,
    policy: ReadPolicy | None = None,
) -> RasterImage:
    """Read a photo, a (multi-band) GeoTIFF/JP2, or a band-per-file product.

    source: a file, a folder of single-band files (``*_B02.tif``), or a list of files: single-band
        files are resampled onto one grid; multi-band files (photos, GeoTIFFs) stack their bands
        in the given order and must share one grid (pass ``band_names``/``wavelengths``).
        A STAC Item ``.json`` is read through its assets (see `skyeye.io.stac`).
    max_size: longest side of the returned grid; larger rasters are read decimated (never
        upsampled). Without it, rasters over ``max_pixels`` pixels raise ``RasterReadError``.
    band_names / wavelengths / sensor: override or complete the file's metadata.
    sar_wavelength: placeholder for SAR bands; without it their wavelengths stay None.
    read_options: GDAL decoding threads and block cache (default: every core, 128 MiB); a
        decimated read of a GDAL raster runs in block-aligned chunks on that many threads.

    Returns a ``RasterImage`` with data (C, H', W') float32, NaN = nodata.
    """
    if max_size is not None and max_size < 1:
        raise RasterReadError(f"max_size must be a positive number of pixels, got {max_size}")
    if sensor is not None:
        try:
            get_sensor(sensor)
        except ValueError as err:
            raise RasterReadError(str(err)) from None
    if policy is not None:
        read_options = dataclasses.replace(read_options or ReadOptions(), untrusted=True)
        if isinstance(source, (str, os.PathLike)):
            policy.check_path(source)
    if isinstance(source, (str, os.PathLike)) and is_stac_file(source):
        return _read_stac(
            Path(source),
            max_size=max_size,
            band_names=band_names,
            wavelengths=wavelengths,
            sensor=sensor,
            sar_wavelength=sar_wavelength,
            max_pixels=max_pixels,
            read_options=read_options,
            policy=policy,
        )
    options = read_options or ReadOptions()
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        files = _band_files_in_folder(Path(source))
        label = str(source)
    elif isinstance(source, (str, os.PathLike)):
        files = None
        label = str(source)
    else:
        files = [Path(f) for f in source]
        if not files:
            raise RasterReadError("got an empty list of band files: pass at least one file")
        label = str(files[0].parent)
    try:
        names_from_files = False
        # An explicit list of multi-band files stacks; a folder is always a band-per-file product.
        listed = files is not None and not isinstance(source, (str, os.PathLike))
        if listed and files is not None and any(_band_count(f, policy) > 1 for f in files):
            image = _read_stacked(files, max_size, max_pixels, options, policy)
        elif files is not None:
            names_from_files = True
            image = read_band_files(
                files, max_size, max_pixels, band_names, sensor, options, policy=policy
            )
        else:
            image = _read_one(Path(source), max_size, max_pixels, options, policy)  # type: ignore[arg-type]
    except RasterioError as err:
        raise RasterReadError(
            f"{label}: not a readable raster (corrupt file or unsupported format): {err}"
        ) from err
    except OSError as err:
        raise RasterReadError(f"{label}: cannot read the file: {err}") from err
    image.path = label
    if image.datetime is None:  # no acquisition tag: a Sentinel/Landsat product name may say it
        image.datetime = date_from_paths([label, *image.extra.get("files", [])])
    if not np.isfinite(image.data).any():
        raise RasterReadError(
            f"{label}: every pixel is nodata/NaN (nodata={image.nodata}); nothing to look at. "
            "Check the nodata value or pick another file/window"
        )
    apply_band_metadata(image, band_names, wavelengths, sensor, sar_wavelength, names_from_files)
    return image


def check_request_source(
    source: str | os.PathLike | Sequence[str | os.PathLike], policy: ReadPolicy
) -> list[Path]:
    """Every file `read_raster` would open for ``source`` (a file, a band folder's members, a
    STAC item's assets), each checked by ``policy`` (inside its root, a plain raster format)
    without decoding a pixel. For readers that open the files themselves (the scene's windows).
    Returns the resolved files."""
    if isinstance(source, (str, os.PathLike)):
        policy.check_path(source)
        if is_stac_file(source):
            return check_request_source(read_stac_item(source).source, policy)
        files = _band_files_in_folder(Path(source)) if Path(source).is_dir() else [Path(source)]
    else:
        files = [Path(f) for f in source]
    return [open_target(f, policy)[0] for f in files]


def _read_stac(path: Path, **kwargs) -> RasterImage:
    """A STAC item: its band assets read by `read_raster`, named and given wavelengths by the
    item unless the caller says otherwise; the item's id and datetime go on the image."""
    scene = read_stac_item(path)
    if kwargs["band_names"] is None:
        kwargs["band_names"] = scene.band_names
    image = read_raster(scene.source, **kwargs)
    known = scene.wavelengths_of(image.band_names)
    if kwargs["wavelengths"] is None and known is not None:
        image.wavelengths = known
    image.path, image.scene_id = str(path), scene.scene_id
    image.datetime = scene.datetime or image.datetime
    return image


def _is_photo(path: Path, pil_format: str | None, policy: ReadPolicy | None) -> bool:
    return pil_format is not None if policy is not None else path.suffix.lower() in PHOTO_EXTENSIONS


def _read_one(
    path: Path,
    max_size: int | None,
    max_pixels: int,
    options: ReadOptions,
    policy: ReadPolicy | None = None,
) -> RasterImage:
    target, pil_format, driver = open_target(path, policy)
    if _is_photo(target, pil_format, policy):
        return read_photo(target, max_size, max_pixels, policy=policy, pil_format=pil_format)
    return _read_gdal(target, max_size, max_pixels, options, policy=policy, driver=driver)


def _band_count(path: Path, policy: ReadPolicy | None = None) -> int:
    target, pil_format, driver = open_target(path, policy)
    if _is_photo(target, pil_format, policy):
        from PIL import Image

        with Image.open(target, formats=[pil_format] if pil_format else None) as photo:
            return len(photo.getbands())
    env = ReadOptions(untrusted=policy is not None).gdal_env()
    with rasterio.Env(**env), rasterio.open(target, driver=driver) as src:
        return src.count


def _read_stacked(
    files: Sequence[Path],
    max_size: int | None,
    max_pixels: int,
    options: ReadOptions,
    policy: ReadPolicy | None = None,
) -> RasterImage:
    """Multi-band files whose bands stack in the given order (e.g. ChatEarthNet's three PNG
    triplets B04/B03/B02, B05/B06/B07, B08/B11/B12); they must share one grid."""
    parts = [_read_one(Path(f), max_size, max_pixels, options, policy) for f in files]
    grids = {part.data.shape[1:] for part in parts}
    if len(grids) != 1:
        raise RasterReadError(
            f"{files[0].parent}: the files to stack have different grids {sorted(grids)}: "
            "resample them to one grid first"
        )
    sensors = {part.sensor for part in parts}
    first = parts[0]
    return RasterImage(
        data=np.concatenate([part.data for part in parts]),
        band_names=[
            f"{Path(f).stem}:{name}"
            for f, part in zip(files, parts, strict=True)
            for name in part.band_names
        ],
        sensor=sensors.pop() if len(sensors) == 1 else None,
        crs=first.crs,
        transform=first.transform,
        source_shape=first.source_shape,
        datetime=first.datetime,
        extra={"files": [str(f) for f in files]},
    )


def _band_files_in_folder(folder: Path) -> list[Path]:
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in BAND_FILE_EXTENSIONS
    )
    if not files:
        raise RasterReadError(
            f"{folder}: folder holds no band files ({sorted(BAND_FILE_EXTENSIONS)}): "
            "pass a raster file or a folder of single-band GeoTIFF/JP2 files"
        )
    return files


def _read_gdal(
    path: Path,
    max_size: int | None,
    max_pixels: int,
    options: ReadOptions,
    *,
    policy: ReadPolicy | None = None,
    driver: str | None = None,
) -> RasterImage:
    label = str(path)
    with rasterio.Env(**options.gdal_env()), rasterio.open(path, driver=driver) as src:
        for dtype in src.dtypes:
            check_dtype(dtype, label)
        if policy is not None:
            itemsize = max(np.dtype(d).itemsize for d in src.dtypes)
            policy.check_size(src.width, src.height, src.count, itemsize, label)
        alpha = [i + 1 for i, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha]
        indexes = [i for i in range(1, src.count + 1) if i not in alpha]
        if not indexes:
            raise RasterReadError(f"{label}: the raster has no bands besides alpha")
        h, w = src.height, src.width
        out_h, out_w = target_shape(h, w, max_size, max_pixels, label)
        shrink = (out_h, out_w) != (h, w)
        per_dataset = MaskFlags.per_dataset in src.mask_flag_enums[indexes[0] - 1]
        mask_kind: Literal["alpha", "dataset"] | None = (
            "alpha" if alpha else "dataset" if per_dataset else None
        )
        mask: np.ndarray | None = None
        if shrink and not src.overviews(indexes[0]):
            # No overviews: every block is decoded; block-aligned chunks on all threads.
            data, mask = read_decimated(
                path,
                indexes,
                (out_h, out_w),
                mask=mask_kind,
                alpha_index=alpha[0] if alpha else None,
                options=options,
                driver=driver,
            )
        else:  # full size, or overviews: GDAL reads the small level
            shape = (out_h, out_w)
            resampling = Resampling.average if shrink else Resampling.nearest
            data = src.read(
                indexes,
                out_shape=(len(indexes), *shape),
                resampling=resampling,
                out_dtype="float32",
            )
            if alpha:
                mask = src.read(alpha[0], out_shape=shape, resampling=Resampling.nearest)
            elif per_dataset:
                mask = src.read_masks(indexes[0], out_shape=shape, resampling=Resampling.nearest)
        if src.nodata is not None and not np.isnan(src.nodata):
            data[data == np.float32(src.nodata)] = np.nan
        # An alpha band or an internal mask marks invalid pixels: apply it to every band.
        if mask is not None:
            data[:, mask == 0] = np.nan
        if any(np.dtype(d).kind == "f" for d in src.dtypes):  # integers are always finite
            data[~np.isfinite(data)] = np.nan
        names = _names_from_metadata(src, indexes)
        transform = src.transform if not src.transform.is_identity else None
        if transform is not None and shrink:
            transform = scaled_transform(transform, (h, w), (out_h, out_w))
        return RasterImage(
            data=data,
            band_names=names,
            crs=src.crs,
            transform=transform,
            nodata=src.nodata,
            source_shape=(h, w),
            datetime=acquisition_tag_date(src),
            extra={"dtype": src.dtypes[indexes[0] - 1], "driver": src.driver},
        )


def _names_from_metadata(src: rasterio.DatasetReader, indexes: list[int]) -> list[str]:
    desc = [src.descriptions[i - 1] for i in indexes]
    if all(desc) and len(set(desc)) == len(desc):
        return [str(d) for d in desc]
    ci = [src.colorinterp[i - 1] for i in indexes]
    if ci == [ColorInterp.red, ColorInterp.green, ColorInterp.blue]:
        return ["R", "G", "B"]
    return [f"band_{i}" for i in indexes]
