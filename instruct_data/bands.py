"""Band names and centre wavelengths (µm) the converters need, read from the library's sensor
registry (`skyeye.io.sensors`): one table for the whole project."""

from __future__ import annotations

from skyeye.io.sensors import get_sensor

_S2 = get_sensor("sentinel-2")
S2_WAVELENGTHS: dict[str, float] = {
    b.name: b.wavelength for b in _S2.bands if b.wavelength is not None
}
S2_ORDER = _S2.band_names
SAR_NAMES = get_sensor("sentinel-1").band_names


def s2_wavelengths(names: list[str]) -> list[float]:
    """Sentinel-2 band names -> wavelengths (µm); KeyError names an unknown band."""
    return [S2_WAVELENGTHS[n] for n in names]
