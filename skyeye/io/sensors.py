"""Sensor registry: band names -> centre wavelengths (µm) and the default 0..255 value scaling.

DOFA-style vision towers condition their patch embedding on each band's wavelength, so every
band that reaches the model needs one. Optical bands carry their centre wavelength; SAR bands
(Sentinel-1 VV/VH) have none, and each checkpoint was trained with its own placeholder
(3.75 in DOFA v1 / torchgeo, 5.405 in DOFA v2). That placeholder is a per-checkpoint setting:
``resolve_wavelengths`` refuses to pick one silently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: Value scalings understood by ``SkyEyeImageProcessor`` (see its docstring for the maths).
VALUE_SCALINGS = ("uint8", "reflectance_10000", "reflectance", "sar_db", "minmax")

#: Valid values between these percentiles' bounds read as 0-1 reflectance (``looks_like_reflectance``):
#: surface / TOA reflectance stays below ~1.2 even on clouds and snow and dips only slightly below 0
#: (surface-reflectance products), while digital numbers, x10000 integers and 8-bit values do not.
REFLECTANCE_RANGE = (-0.2, 1.6)


def looks_like_reflectance(data) -> bool:
    """True when the finite values of ``data`` (any shape) look like 0-1 reflectance.

    The 0.5th and 99.5th percentiles must lie in ``REFLECTANCE_RANGE``: a float GeoTIFF of
    Landsat TOA / surface reflectance or Sentinel-2 L2A divided by 10000 passes; DNs, x10000
    integers, 8-bit composites and dB values (mostly below -0.2) do not.
    """
    import numpy as np

    values = np.asarray(data, dtype=np.float32)
    values = values[np.isfinite(values)]
    n = values.size
    if n == 0:
        return False
    low, high = REFLECTANCE_RANGE
    # Exact shortcut before sorting (the percentiles cost ~20 ms on a 13-band 512 px read): the
    # 99.5th percentile interpolates between sorted values at floor(p) and above, p = 0.995 (n - 1),
    # so when the n - floor(p) largest values all exceed the bound, so does the percentile (DNs,
    # x10000 integers and 8-bit values stop here); likewise the 0.5th below the low bound.
    if np.count_nonzero(values > high) >= n - int(np.floor(0.995 * (n - 1))):
        return False
    if np.count_nonzero(values < low) >= int(np.ceil(0.005 * (n - 1))) + 1:
        return False
    lo, hi = np.percentile(values, [0.5, 99.5])
    return bool(low <= lo and hi <= high and hi > 0)


@dataclass(frozen=True)
class Band:
    """One spectral band.

    name: canonical name as the sensor's products spell it (``"B8A"``, ``"VV"``, ``"R"``).
    wavelength: centre wavelength in µm, ``None`` for SAR.
    kind: ``"optical"`` (includes thermal) or ``"sar"``.
    aliases: other spellings accepted on lookup (case-insensitive).
    """

    name: str
    wavelength: float | None
    kind: str = "optical"
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("optical", "sar"):
            raise ValueError(f"Band kind must be 'optical' or 'sar', got {self.kind!r}")
        if self.kind == "optical" and self.wavelength is None:
            raise ValueError(f"optical band {self.name!r} needs a wavelength")


@dataclass(frozen=True)
class Sensor:
    """A sensor: its bands in product order and the default scaling of its values to 0..255.

    default_scaling: one of ``VALUE_SCALINGS``; what ``SkyEyeImageProcessor(value_scaling="auto")``
    uses for images of this sensor.
    """

    name: str
    bands: tuple[Band, ...]
    description: str
    default_scaling: str

    def __post_init__(self) -> None:
        if self.default_scaling not in VALUE_SCALINGS:
            raise ValueError(
                f"Sensor {self.name!r}: default_scaling {self.default_scaling!r} "
                f"is not one of {VALUE_SCALINGS}"
            )

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def find_band(self, name: str) -> Band | None:
        """The band called ``name`` (canonical name or alias, case-insensitive; B2 == B02)."""
        key = _canonical(name)
        for band in self.bands:
            if key == _canonical(band.name) or key in {_canonical(a) for a in band.aliases}:
                return band
        return None

    def band_index(self, name: str) -> int:
        """Position of ``name`` in the sensor's product band order (for sorting)."""
        band = self.find_band(name)
        if band is None:
            raise ValueError(f"band {name!r} is not a {self.name} band ({self.band_names})")
        return self.bands.index(band)


def _canonical(name: str) -> str:
    """Upper-case and drop zero padding after a leading B, so 'b02', 'B2' and 'B02' compare equal."""
    key = name.strip().upper()
    m = re.fullmatch(r"B0*(\d+[A-Z]?)", key)
    return f"B{m.group(1)}" if m else key


def _optical(name: str, wavelength: float, *aliases: str) -> Band:
    return Band(name, wavelength, "optical", tuple(aliases))


_S2 = Sensor(
    name="sentinel-2",
    bands=(
        _optical("B01", 0.443, "coastal"),
        _optical("B02", 0.490, "blue"),
        _optical("B03", 0.560, "green"),
        _optical("B04", 0.665, "red"),
        _optical("B05", 0.705, "rededge1"),
        _optical("B06", 0.740, "rededge2"),
        _optical("B07", 0.783, "rededge3"),
        _optical("B08", 0.842, "nir"),
        _optical("B8A", 0.865, "nir08", "narrow_nir"),
        _optical("B09", 0.945, "water_vapour", "nir09"),
        _optical("B10", 1.375, "cirrus"),
        _optical("B11", 1.610, "swir1", "swir16"),
        _optical("B12", 2.190, "swir2", "swir22"),
    ),
    description="Sentinel-2 MSI L1C/L2A; digital numbers are reflectance x 10000 "
    "(L2A since processing baseline 04.00 adds a +1000 offset: subtract it first).",
    default_scaling="reflectance_10000",
)

_S1 = Sensor(
    name="sentinel-1",
    bands=(Band("VV", None, "sar"), Band("VH", None, "sar")),
    description="Sentinel-1 C-band SAR GRD backscatter, VV and VH, in dB "
    "(convert linear sigma0 with 10*log10 first).",
    default_scaling="sar_db",
)


def _landsat(name: str, instrument: str) -> Sensor:
    # OLI / TIRS centre wavelengths (USGS Landsat 8-9 band designations). B8 (15 m
    # panchromatic) is left out on purpose: it lives on another grid and is not a spectral band
    # DOFA models are trained on.
    return Sensor(
        name=name,
        bands=(
            # SR_Bn / ST_B10: Collection 2 Level-2 names (USGS files, Earth Engine, STAC assets).
            _optical("B1", 0.443, "coastal", "SR_B1"),
            _optical("B2", 0.482, "blue", "SR_B2"),
            _optical("B3", 0.561, "green", "SR_B3"),
            _optical("B4", 0.655, "red", "SR_B4"),
            _optical("B5", 0.865, "nir", "nir08", "SR_B5"),
            _optical("B6", 1.609, "swir1", "swir16", "SR_B6"),
            _optical("B7", 2.201, "swir2", "swir22", "SR_B7"),
            _optical("B9", 1.373, "cirrus"),
            _optical("B10", 10.895, "tirs1", "lwir11", "ST_B10"),
            _optical("B11", 12.005, "tirs2", "lwir12"),
        ),
        description=f"{instrument}; product scaling varies (L1 DN, TOA, L2 SR), so the default "
        "value scaling is a per-band percentile stretch, unless the values are 0-1 reflectance "
        "(``looks_like_reflectance``).",
        default_scaling="minmax",
    )


def _landsat_tm(name: str, instrument: str, centres: tuple[float, ...]) -> Sensor:
    # TM (Landsat 4-5) / ETM+ (Landsat 7) numbering: B1 is blue and B4 near-infrared, where on
    # Landsat 8-9 B1 is coastal and B4 red. ``centres``: B1-B5, B6 (thermal), B7. ETM+'s B8
    # (15 m panchromatic) is left out, as OLI's is.
    b1, b2, b3, b4, b5, b6, b7 = centres
    return Sensor(
        name=name,
        bands=(
            _optical("B1", b1, "SR_B1"),
            _optical("B2", b2, "SR_B2"),
            _optical("B3", b3, "SR_B3"),
            _optical("B4", b4, "SR_B4"),
            _optical("B5", b5, "SR_B5"),
            _optical("B6", b6, "ST_B6"),
            _optical("B7", b7, "SR_B7"),
        ),
        description=f"{instrument}; band numbers differ from Landsat 8-9 (B4 is near-infrared "
        "here, red there), so B-numbered files are told apart by their product ID "
        "(`skyeye.io.product_ids`) or a given sensor. Scaling as for Landsat 8.",
        default_scaling="minmax",
    )


_REGISTRY: dict[str, Sensor] = {
    "sentinel-2": _S2,
    "sentinel-1": _S1,
    # USGS centre wavelengths; Landsat 4 TM reads as landsat-5.
    "landsat-5": _landsat_tm(
        "landsat-5", "Landsat 4-5 TM", (0.485, 0.560, 0.660, 0.830, 1.650, 11.45, 2.215)
    ),
    "landsat-7": _landsat_tm(
        "landsat-7", "Landsat 7 ETM+", (0.483, 0.560, 0.662, 0.835, 1.648, 11.335, 2.206)
    ),
    "landsat-8": _landsat("landsat-8", "Landsat 8 OLI/TIRS"),
    "landsat-9": _landsat("landsat-9", "Landsat 9 OLI-2/TIRS-2"),
    "naip": Sensor(
        name="naip",
        bands=(
            _optical("R", 0.64, "red"),
            _optical("G", 0.56, "green"),
            _optical("B", 0.48, "blue"),
            _optical("NIR", 0.81),
        ),
        description="USDA NAIP aerial imagery, 8-bit R, G, B, NIR (the band order NAIP ships).",
        default_scaling="uint8",
    ),
    "rgb": Sensor(
        name="rgb",
        bands=(
            _optical("R", 0.665, "red"),
            _optical("G", 0.560, "green"),
            _optical("B", 0.490, "blue"),
        ),
        description="Generic 8-bit RGB photo (PNG/JPG); Sentinel-2 B04/B03/B02 wavelengths.",
        default_scaling="uint8",
    ),
}


def get_sensor(name: str) -> Sensor:
    """The registered sensor called ``name`` (e.g. ``"sentinel-2"``)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown sensor {name!r}; known sensors: {list_sensors()}") from None


def list_sensors() -> list[str]:
    """Names of all registered sensors."""
    return sorted(_REGISTRY)


def is_band_name(name: str) -> bool:
    """Whether ``name`` is a band of some registered sensor (canonical name or alias)."""
    return any(sensor.find_band(name) is not None for sensor in _REGISTRY.values())


def sensors_matching_bands(band_names: Sequence[str]) -> list[str]:
    """Registered sensors whose canonical band names contain every name in ``band_names``.

    Matches the exact names (case-insensitive; no aliases, no zero-padding games: "B02" is
    Sentinel-2, "B2" Landsat), so generic names never pick a sensor. Used to recognise files
    whose band descriptions or file names spell a sensor's bands (B02, B8A, VV).
    """
    keys = [n.strip().upper() for n in band_names]
    if not keys:
        return []
    return [
        name
        for name, sensor in sorted(_REGISTRY.items())
        if all(k in {b.name.upper() for b in sensor.bands} for k in keys)
    ]


#: Centre wavelengths SkyEye accepts, in µm: near-UV to thermal infrared. SAR placeholders
#: (3.75, 5.405) fall inside; nanometre values (665) and metres-as-µm typos do not.
WAVELENGTH_RANGE_UM = (0.3, 30.0)
#: Two sensors' band tables "agree" when their centre wavelengths differ by at most this (µm):
#: Landsat and Sentinel-2 bands of the same name are within 0.011 µm of each other.
AGREEMENT_UM = 0.02


def check_wavelengths(values: Sequence[float]) -> None:
    """Refuse wavelengths outside `WAVELENGTH_RANGE_UM`, naming nanometre values as such.

    Raises:
        ValueError: one line with the values, the allowed range and, for nanometres, the µm values.
    """
    low, high = WAVELENGTH_RANGE_UM
    bad = [w for w in values if not (low <= w <= high)]  # also catches NaN
    if not bad:
        return
    if all(300 <= w <= 30000 for w in values):
        micro = ",".join(f"{w / 1000:g}" for w in values)
        raise ValueError(
            f"wavelengths {[f'{w:g}' for w in values]} look like nanometres, but SkyEye takes "
            f"µm: give {micro}"
        )
    raise ValueError(
        f"wavelengths must be between {low:g} and {high:g} µm (centre wavelength of each band; "
        f"SAR bands take the checkpoint's placeholder), got {[f'{w:g}' for w in bad]}"
    )


def wavelengths_from_band_names(band_names: Sequence[str]) -> tuple[str | None, list[float] | None]:
    """The sensor and wavelengths that band names spell, allowing other spellings.

    For names that `sensors_matching_bands` does not recognise exactly: Earth Engine's
    unpadded Sentinel-2 names (`B1`..`B12`, `B8A`/`B8a`), Landsat Collection 2 names (`SR_B4`,
    `ST_B10`) and STAC common names (`coastal`, `nir08`, `swir16`). Every name must be a band
    (canonical name or alias) of a registered sensor. One such sensor gives (sensor, None): the
    caller resolves its wavelengths. Several give (None, wavelengths) when their wavelengths agree
    within `AGREEMENT_UM` (the first in `list_sensors()` order is used), else (None, None): plain
    red/green/blue are NAIP's or a photo's and so pick nothing.
    """
    names = list(band_names)
    if not names:
        return None, None
    candidates = [
        sensor
        for _, sensor in sorted(_REGISTRY.items())
        if all(sensor.find_band(n) is not None for n in names)
    ]
    if len(candidates) == 1:
        return candidates[0].name, None
    tables = []
    for sensor in candidates:
        bands = [sensor.find_band(n) for n in names]
        if any(b is None or b.wavelength is None for b in bands):
            continue
        tables.append([b.wavelength for b in bands if b is not None and b.wavelength is not None])
    if len(tables) < 2 or len(tables) != len(candidates):
        return None, None
    spread = max(max(col) - min(col) for col in zip(*tables, strict=True))
    return (None, list(tables[0])) if spread <= AGREEMENT_UM else (None, None)


def resolve_wavelengths(
    band_names: Sequence[str],
    *,
    sensor: str | Sensor | None = None,
    wavelengths: Sequence[float] | None = None,
    sar_wavelength: float | None = None,
) -> list[float]:
    """Wavelengths in µm, one per band.

    Explicit ``wavelengths`` win (their count must equal the band count). Otherwise each band
    name is looked up in ``sensor``; SAR bands get ``sar_wavelength``, the checkpoint's
    placeholder, which must be given (never defaulted silently).

    Returns: list of C floats (µm).
    """
    names = list(band_names)
    if wavelengths is not None:
        values = [float(w) for w in wavelengths]
        if len(values) != len(names):
            raise ValueError(
                f"got {len(values)} wavelengths for {len(names)} bands {names}: pass exactly one "
                "wavelength (µm) per band, in band order"
            )
        check_wavelengths(values)
        return values
    if sensor is None:
        raise ValueError(
            f"cannot tell the wavelengths of bands {names}: pass a sensor (one of "
            f"{list_sensors()}) or explicit wavelengths in µm"
        )
    sensor_obj = get_sensor(sensor) if isinstance(sensor, str) else sensor
    bands = [sensor_obj.find_band(n) for n in names]
    unknown = [n for n, b in zip(names, bands, strict=True) if b is None]
    if unknown:
        raise ValueError(
            f"band name(s) {unknown} are not {sensor_obj.name} bands; {sensor_obj.name} bands are "
            f"{sensor_obj.band_names}: rename the bands or pass explicit wavelengths"
        )
    out: list[float] = []
    for band in bands:
        assert band is not None
        if band.kind == "sar":
            if sar_wavelength is None:
                raise ValueError(
                    f"{sensor_obj.name} band {band.name} is SAR and has no optical wavelength: set "
                    "sar_wavelength to the checkpoint's placeholder (3.75 for DOFA v1 / torchgeo, "
                    "5.405 for DOFA v2)"
                )
            out.append(float(sar_wavelength))
        else:
            assert band.wavelength is not None
            out.append(band.wavelength)
    return out
