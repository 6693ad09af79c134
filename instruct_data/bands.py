"""Band names and centre wavelengths (µm) the converters need (values from DESIGN.md)."""

from __future__ import annotations

import re

S2_WAVELENGTHS: dict[str, float] = {
    "B01": 0.443,
    "B02": 0.490,
    "B03": 0.560,
    "B04": 0.665,
    "B05": 0.705,
    "B06": 0.740,
    "B07": 0.783,
    "B08": 0.842,
    "B8A": 0.865,
    "B09": 0.945,
    "B10": 1.375,
    "B11": 1.610,
    "B12": 2.190,
}
S2_ORDER = list(S2_WAVELENGTHS)
RGB_NAMES = ["R", "G", "B"]
RGB_WAVELENGTHS = [0.665, 0.560, 0.490]
SAR_NAMES = ["VV", "VH"]

_BAND_FILE_RE = re.compile(r"_(B(?:0[1-9]|1[0-2]|8A))\.(?:tif|tiff|jp2)$", re.IGNORECASE)


def s2_band_of_file(name: str) -> str | None:
    """``..._B8A.tif`` -> ``"B8A"`` (None when the name carries no Sentinel-2 band)."""
    m = _BAND_FILE_RE.search(name)
    return m.group(1).upper() if m else None


def s2_wavelengths(names: list[str]) -> list[float]:
    """Sentinel-2 band names -> wavelengths (µm); KeyError names an unknown band."""
    return [S2_WAVELENGTHS[n] for n in names]
