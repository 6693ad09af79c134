"""Band names, sensor and wavelengths of a raster just read: from the caller's arguments, the
file's metadata and the band table (`skyeye.io.sensors`), by one set of rules for every reader
(`read_raster`, the scene's windows)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from skyeye.errors import RasterReadError
from skyeye.io.image import RasterImage
from skyeye.io.product_ids import sensor_from_product_id
from skyeye.io.sensors import (
    get_sensor,
    resolve_wavelengths,
    sensors_matching_bands,
    wavelengths_from_band_names,
)

logger = logging.getLogger(__name__)


def complete_band_metadata(
    image: RasterImage,
    *,
    band_names: Sequence[str] | None = None,
    wavelengths: Sequence[float] | None = None,
    sensor: str | None = None,
    sar_wavelength: float | None = None,
    names_from_files: bool = False,
) -> RasterImage:
    """Fill band names, sensor and wavelengths of an image read by another reader (e.g. the
    windows of `skyeye.scene`) by the rules of `read_raster`; returns the same image."""
    if sensor is not None:
        try:
            get_sensor(sensor)
        except ValueError as err:
            raise RasterReadError(str(err)) from None
    apply_band_metadata(image, band_names, wavelengths, sensor, sar_wavelength, names_from_files)
    return image


def apply_band_metadata(
    image: RasterImage,
    band_names: Sequence[str] | None,
    wavelengths: Sequence[float] | None,
    sensor: str | None,
    sar_wavelength: float | None,
    names_from_files: bool,
) -> None:
    """Fill band names, sensor and wavelengths from the arguments and the file's metadata."""
    count = image.data.shape[0]
    label = image.path
    if band_names is not None and not names_from_files:
        if len(band_names) != count:
            raise RasterReadError(
                f"{label}: got {len(band_names)} band names for {count} bands: pass one name per band"
            )
        image.band_names = [str(n) for n in band_names]
    if sensor is not None:
        sensor_obj = get_sensor(sensor)
        generic = all(n.startswith("band_") for n in image.band_names) or image.sensor == "rgb"
        if generic and band_names is None:
            if count != len(sensor_obj.bands):
                if wavelengths is None:
                    raise RasterReadError(
                        f"{label}: {count} bands without band names, but {sensor} has "
                        f"{len(sensor_obj.bands)} bands ({sensor_obj.band_names}): pass the "
                        "bands' wavelengths (--wavelengths, µm, one per band), or their names "
                        "(band_names in Python)"
                    )
            else:
                image.band_names = sensor_obj.band_names  # the sensor's own product band order
        image.sensor = sensor
    elif image.sensor is None:
        # A USGS product ID in the path names the sensor, whatever spelling the bands have
        # (B4, SR_B4): B1..B7 are TM / ETM+ bands or OLI bands, at other wavelengths.
        named = sensor_from_product_id(label)
        matches = sensors_matching_bands(image.band_names)
        if named is not None and all(get_sensor(named).find_band(n) for n in image.band_names):
            image.sensor = named
            logger.info("%s: band names %s, product ID of %s", label, image.band_names, named)
        elif len(matches) == 1:
            image.sensor = matches[0]
            logger.info("%s: band names %s are %s bands", label, image.band_names, matches[0])
        elif len(matches) > 1:
            # Ambiguous (B1..B7 on Landsat 4-7 and 8-9 without a product ID, or R/G/B in rgb and
            # naip): the wavelengths only if every candidate agrees on them (landsat-8 and
            # landsat-9 do); otherwise none, and the processor asks for a sensor or wavelengths
            # rather than guess (B4 is red on one, near-infrared on another).
            resolved = {
                tuple(_try_resolve(image.band_names, m, sar_wavelength) or ()) for m in matches
            }
            if len(resolved) == 1 and () not in resolved:
                image.wavelengths = list(resolved.pop())
        else:
            # Other spellings: Earth Engine's B1..B12/B8A, Landsat SR_B4, STAC common names.
            found, agreed = wavelengths_from_band_names(image.band_names)
            if found is not None:
                image.sensor = found
                logger.info("%s: band names %s are %s bands", label, image.band_names, found)
            elif agreed is not None and wavelengths is None:
                image.wavelengths = agreed
    if wavelengths is not None or image.sensor is not None:
        try:
            if image.sensor is not None and wavelengths is None and sar_wavelength is None:
                has_sar = any(
                    (b := get_sensor(image.sensor).find_band(n)) is not None and b.kind == "sar"
                    for n in image.band_names
                )
                if has_sar:
                    return  # the processor fills SAR bands with its checkpoint's placeholder
            image.wavelengths = resolve_wavelengths(
                image.band_names,
                sensor=image.sensor,
                wavelengths=wavelengths,
                sar_wavelength=sar_wavelength,
            )
        except ValueError as err:
            raise RasterReadError(f"{label}: {err}") from None


def _try_resolve(names: list[str], sensor: str, sar_wavelength: float | None) -> list[float] | None:
    try:
        return resolve_wavelengths(names, sensor=sensor, sar_wavelength=sar_wavelength)
    except ValueError:
        return None
