"""Which band plays which spectral role (blue, green, red, NIR, cirrus, SWIR1), by wavelength.

One table for everything that picks bands by role: the spectral-index labels of
``instruct_data.from_rasters``, the validation baselines (NDWI, MNDWI) and the "hires" mask
decoder's index features. A band is found by its central wavelength, so any sensor with the needed
bands works (Sentinel-2, Landsat, NAIP, ...); a band without a known wavelength never matches.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ROLES", "role_band_index"]

#: Wavelength windows (µm) that identify a band's role: (low, high, centre); the band nearest the
#: centre wins (so Sentinel-2's NIR is B08 at 0.842 µm, not B07 or B8A).
ROLES: dict[str, tuple[float, float, float]] = {
    "blue": (0.45, 0.52, 0.49),
    "green": (0.52, 0.60, 0.56),
    "red": (0.62, 0.69, 0.665),
    "nir": (0.76, 0.90, 0.842),
    "cirrus": (1.36, 1.39, 1.375),
    "swir1": (1.55, 1.75, 1.61),
}


def role_band_index(wavelengths: Sequence[float | None] | None, role: str) -> int | None:
    """The band inside ``role``'s window whose wavelength (µm) is nearest its centre, or None."""
    lo, hi, centre = ROLES[role]
    best, dist = None, 1e9
    for i, w in enumerate(wavelengths or []):
        if w is not None and lo <= w <= hi and abs(w - centre) < dist:
            best, dist = i, abs(w - centre)
    return best
