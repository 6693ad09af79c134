"""Band names and centre wavelengths (µm) the converters need, read from the library's sensor
registry (`skyeye.io.sensors`): one table for the whole project."""

from __future__ import annotations

import re

from skyeye.io.sensors import get_sensor

_S2 = get_sensor("sentinel-2")
S2_WAVELENGTHS: dict[str, float] = {
    b.name: b.wavelength for b in _S2.bands if b.wavelength is not None
}
S2_ORDER = _S2.band_names
SAR_NAMES = get_sensor("sentinel-1").band_names

_BAND_FILE_RE = re.compile(r"_(B(?:0[1-9]|1[0-2]|8A))\.(?:tif|tiff|jp2)$", re.IGNORECASE)


def s2_band_of_file(name: str) -> str | None:
    """``..._B8A.tif`` -> ``"B8A"`` (None when the name carries no Sentinel-2 band)."""
    m = _BAND_FILE_RE.search(name)
    return m.group(1).upper() if m else None


def s2_wavelengths(names: list[str]) -> list[float]:
    """Sentinel-2 band names -> wavelengths (µm); KeyError names an unknown band."""
    return [S2_WAVELENGTHS[n] for n in names]
