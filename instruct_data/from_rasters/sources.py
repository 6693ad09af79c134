"""Load a scene's image (raster file, band-per-file folder, or NumPy array) as a RasterImage."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_bounds

from instruct_data.from_rasters.spec import ImageSpec, SpecError
from skyeye.io.raster import RasterImage, read_raster
from skyeye.io.sensors import get_sensor, looks_like_reflectance

logger = logging.getLogger(__name__)

SENSOR_LABELS = {
    "sentinel-2": "Sentinel-2",
    "sentinel-1": "Sentinel-1 SAR",
    "landsat-8": "Landsat 8",
    "landsat-9": "Landsat 9",
    "naip": "NAIP aerial",
    "rgb": "RGB",
}


def resolve_path(root: Path, p: str) -> Path:
    """``p`` relative to ``root`` (absolute paths kept); SpecError when it does not exist."""
    full = Path(p) if Path(p).is_absolute() else root / p
    if not full.exists():
        raise SpecError(f"{full}: no such file or folder (paths resolve against {root})")
    return full


def load_array(path: Path, key: str | None, layout: str, time_index: int | None) -> np.ndarray:
    """A .npy/.npz array rearranged to (C, H, W) (or (H, W) for layout HW)."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if key is None or key not in z.files:
                raise SpecError(f"{path}: give 'key', one of {z.files}")
            arr = z[key]
    else:
        arr = np.load(path, allow_pickle=False)
    if layout.startswith("T"):
        if time_index is None or not -arr.shape[0] <= time_index < arr.shape[0]:
            raise SpecError(
                f"{path}: time_index {time_index} out of range for {arr.shape[0]} dates"
            )
        arr, layout = arr[time_index], layout[1:]
    if layout == "HW":
        if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
            arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:2])
        if arr.ndim != 2:
            raise SpecError(f"{path}: expected a 2-D (H, W) label array, got shape {arr.shape}")
        return arr
    if arr.ndim != 3:
        raise SpecError(f"{path}: layout {layout} needs a 3-D array, got shape {arr.shape}")
    return np.moveaxis(arr, -1, 0) if layout == "HWC" else arr


def load_image(spec: ImageSpec, root: Path) -> RasterImage:
    """Read the image a spec names. Returns a RasterImage with data (C, H, W) float32, NaN = nodata."""
    if spec.path is not None:
        img = read_raster(
            resolve_path(root, spec.path),
            max_size=spec.max_size,
            sensor=spec.sensor,
            band_names=spec.band_names,
            wavelengths=spec.wavelengths,  # type: ignore[arg-type]
        )
        if img.sensor == "sentinel-1" or (
            img.wavelengths is None
            and img.sensor is not None
            and all(b.kind == "sar" for b in get_sensor(img.sensor).bands)
        ):
            img.wavelengths = [None] * len(img.band_names)  # type: ignore[list-item]
        return img
    path = resolve_path(root, spec.array)  # type: ignore[arg-type]
    data = load_array(path, spec.key, spec.layout, spec.time_index).astype(np.float32)
    names = list(spec.band_names or [])
    if len(names) != data.shape[0]:
        raise SpecError(f"{path}: {len(names)} band_names for {data.shape[0]} bands")
    wls = spec.wavelengths
    if wls is None and spec.sensor is not None:
        s = get_sensor(spec.sensor)
        try:
            wls = [s.find_band(n).wavelength for n in names]  # type: ignore[union-attr]
        except AttributeError:
            raise SpecError(f"{path}: band names {names} are not all {spec.sensor} bands") from None
    if wls is not None and len(wls) != len(names):
        raise SpecError(f"{path}: {len(wls)} wavelengths for {len(names)} bands")
    data[~np.isfinite(data)] = np.nan
    crs = transform = None
    if spec.bounds is not None:
        if spec.crs is None:
            raise SpecError(f"{path}: bounds need a crs (e.g. EPSG:32633)")
        crs = rasterio.crs.CRS.from_user_input(spec.crs)
        transform = from_bounds(*spec.bounds, width=data.shape[2], height=data.shape[1])
    return RasterImage(
        data=data,
        band_names=names,
        wavelengths=list(wls) if wls is not None else None,  # type: ignore[arg-type]
        sensor=spec.sensor,
        crs=crs,
        transform=transform,
        path=str(path),
    )


def is_sar(img: RasterImage) -> bool:
    """True when every band is a SAR band (no optical wavelength)."""
    if img.sensor == "sentinel-1":
        return True
    return img.wavelengths is not None and all(w is None for w in img.wavelengths)


def modality_of(img: RasterImage) -> str:
    """Unified-format modality: sar, optical (<= 3 bands) or multispectral."""
    if is_sar(img):
        return "sar"
    return "optical" if img.data.shape[0] <= 3 else "multispectral"


def sensor_label(img: RasterImage, spec: ImageSpec) -> str:
    """How prompts name the sensor ("Sentinel-2", "Sentinel-1 SAR", or the spec's sensor_label)."""
    if spec.sensor_label:
        return spec.sensor_label
    if img.sensor in SENSOR_LABELS:
        return SENSOR_LABELS[img.sensor]
    return "SAR" if is_sar(img) else "satellite"


def reflectance_scale(img: RasterImage, spec: ImageSpec) -> float:
    """Factor turning the optical values into 0-1 reflectance (spec ``scale`` or a logged guess)."""
    if spec.scale is not None:
        return float(spec.scale)
    scale = 1.0 if looks_like_reflectance(img.data) else 1e-4
    logger.info(
        "%s: values %s 0-1 -> assuming reflectance x %g (set 'scale' in the spec to override)",
        img.path,
        "in" if scale == 1.0 else "beyond",
        1 / scale,
    )
    return scale
