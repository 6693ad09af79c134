"""The band table: band names and wavelengths of an image, shown, edited and applied.

A row is `[number, name, wavelength µm or ""]`. The wavelength column is what the model's
DOFA patch embedding is conditioned on, so the demo lets the user fix it (a GeoTIFF without band
descriptions, a custom sensor) or fill it from a sensor's band table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from skyeye.errors import BandTableError
from skyeye.io.raster import RasterImage
from skyeye.io.sensors import Sensor, get_sensor

HEADERS = ["#", "band", "wavelength (µm)"]
NO_SENSOR = "other / unknown"


def _sensor(name: str | None) -> Sensor | None:
    if name in (None, "", NO_SENSOR):
        return None
    try:
        return get_sensor(str(name))
    except ValueError as err:
        raise BandTableError(str(err)) from None


def band_rows(image: RasterImage) -> list[list[Any]]:
    """Rows `[number, name, wavelength]` for `image`; unknown wavelengths (SAR) are ""."""
    sensor = _sensor(image.sensor)
    rows: list[list[Any]] = []
    for i, name in enumerate(image.band_names):
        wl: float | None = None
        if image.wavelengths is not None:
            wl = float(image.wavelengths[i])
        elif sensor is not None and (band := sensor.find_band(name)) is not None:
            wl = band.wavelength
        rows.append([i + 1, name, "" if wl is None else round(wl, 4)])
    return rows


def _parse_wavelength(value: Any, band: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        wl = float(str(value).replace("µm", "").replace(",", ".").strip())
    except ValueError:
        raise BandTableError(
            f"band {band!r}: wavelength {value!r} is not a number: type the centre wavelength in µm "
            "(e.g. 0.665 for red)"
        ) from None
    if math.isnan(wl):
        return None
    if not 0.0 < wl < 1e6:
        raise BandTableError(f"band {band!r}: wavelength {wl} µm must be a positive number")
    return wl


def _fill_sar(
    names: list[str],
    wavelengths: list[float | None],
    sensor: Sensor | None,
    sar_wavelength: float | None,
) -> list[float] | None:
    """Complete blank wavelengths of SAR bands with the model's placeholder; None if all SAR are blank
    and the model has none (the processor then explains what to set)."""
    blank = [i for i, wl in enumerate(wavelengths) if wl is None]
    if not blank:
        return [float(w) for w in wavelengths if w is not None]
    not_sar = [
        names[i]
        for i in blank
        if sensor is None or (b := sensor.find_band(names[i])) is None or b.kind != "sar"
    ]
    if not_sar:
        raise BandTableError(
            f"band(s) {not_sar} have no wavelength: type each centre wavelength in µm, or pick the "
            "sensor the bands belong to"
        )
    if sar_wavelength is not None:
        return [float(sar_wavelength) if w is None else float(w) for w in wavelengths]
    if len(blank) == len(names):
        return None
    raise BandTableError(
        f"SAR band(s) {[names[i] for i in blank]} need this model's placeholder wavelength, and the "
        "model does not define one (sar_wavelength in preprocessor_config.json): type the value "
        "it was trained with (3.75 for DOFA v1, 5.405 for DOFA v2)"
    )


def apply_rows(
    image: RasterImage,
    rows: Sequence[Sequence[Any]],
    sensor: str | None,
    *,
    sar_wavelength: float | None = None,
) -> RasterImage:
    """A copy of `image` with the table's band names and wavelengths and the chosen sensor.

    rows: one `[number, name, wavelength]` per band, in band order. `sensor` (or `NO_SENSOR`)
    picks the value scaling and which bands are SAR; blank wavelengths are allowed only for SAR
    bands and take the model's `sar_wavelength`.
    """
    count = image.data.shape[0]
    rows = [list(r) for r in rows if any(str(v).strip() for v in r if v is not None)]
    if len(rows) != count:
        raise BandTableError(
            f"the table has {len(rows)} rows but the image has {count} bands: keep one row per band"
        )
    names: list[str] = []
    wavelengths: list[float | None] = []
    for i, row in enumerate(rows):
        if len(row) < 3:
            raise BandTableError(f"row {i + 1} needs a band name and a wavelength")
        name = "" if row[1] is None else str(row[1]).strip()
        if not name:
            raise BandTableError(f"row {i + 1} has no band name: type one (e.g. B04 or red)")
        names.append(name)
        wavelengths.append(_parse_wavelength(row[2], name))
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BandTableError(f"band names must be unique; repeated: {dupes}")
    sensor_obj = _sensor(sensor)
    filled = _fill_sar(names, wavelengths, sensor_obj, sar_wavelength)
    return dataclasses.replace(
        image,
        band_names=names,
        wavelengths=filled,
        sensor=sensor_obj.name if sensor_obj is not None else None,
    )


def apply_sensor(
    image: RasterImage, sensor: str, *, sar_wavelength: float | None = None
) -> RasterImage:
    """A copy of `image` labelled as `sensor`'s bands, with that sensor's wavelengths.

    Bands already named after the sensor's bands keep their order; otherwise an image with as
    many bands as the sensor is taken to be in the sensor's product order.
    """
    if sensor in (None, "", NO_SENSOR):
        return dataclasses.replace(image, sensor=None)
    sensor_obj = _sensor(sensor)
    assert sensor_obj is not None
    count = image.data.shape[0]
    found = [sensor_obj.find_band(n) for n in image.band_names]
    if all(b is not None for b in found):
        bands = [b for b in found if b is not None]
    elif count == len(sensor_obj.bands):
        bands = list(sensor_obj.bands)
    else:
        raise BandTableError(
            f"{sensor_obj.name} has {len(sensor_obj.bands)} bands {sensor_obj.band_names}, but this "
            f"image has {count} bands named {image.band_names}: rename them in the table to "
            f"{sensor_obj.name} band names (or type their wavelengths) and press 'Apply table'"
        )
    names = [b.name for b in bands]
    wavelengths = _fill_sar(names, [b.wavelength for b in bands], sensor_obj, sar_wavelength)
    return dataclasses.replace(
        image, band_names=names, wavelengths=wavelengths, sensor=sensor_obj.name
    )
