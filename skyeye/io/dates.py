"""Acquisition dates: from a raster's metadata tags, from Sentinel/Landsat product names and NAIP
file names, from the user (``--date``).

A date is kept as ISO 8601 text: ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS`` (UTC, as the products
give it; a STAC item's own string is kept as is). Only sources that *mean* acquisition count:
``TIFFTAG_DATETIME`` is when the file was written, and the date in an old-style Sentinel-2 tile
name (``S2A_OPER_MSI_L1C_TL_EPA__20160809T015434_...``) is when the tile was processed, so both
give None rather than a wrong date.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rasterio.errors import RasterioError

__all__ = [
    "ACQUISITION_TAGS",
    "acquisition_tag_date",
    "date_from_name",
    "date_from_paths",
    "date_from_tags",
    "date_label",
    "normalize_date",
    "parse_user_date",
]

#: Metadata keys (any case) whose value is the acquisition time, in order of preference.
#: GDAL's IMAGERY domain writes ACQUISITIONDATETIME; Sentinel-2 SAFE metadata DATATAKE_1_..._START
#: and PRODUCT_START_TIME; Landsat MTL DATE_ACQUIRED; eo-learn / STAC-like writers "datetime".
ACQUISITION_TAGS: tuple[str, ...] = (
    "ACQUISITIONDATETIME",
    "ACQUISITION_DATETIME",
    "ACQUISITION_DATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "SENSING_START",
    "DATATAKE_1_DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "DATETIME",
    "START_DATETIME",
)
#: Keys that look like dates but are not acquisition: never read.
NOT_ACQUISITION = frozenset({"TIFFTAG_DATETIME", "PROCESSING_TIME", "GENERATION_TIME"})

_DATE = r"(?P<y>(?:19|20)\d\d)[-:/]?(?P<m>[01]\d)[-:/]?(?P<d>[0-3]\d)"
_TIME = r"(?:[T ](?P<H>[0-2]\d):?(?P<M>[0-5]\d):?(?P<S>[0-6]\d))?"
_VALUE = re.compile(rf"^\s*{_DATE}{_TIME}")

#: File/folder name patterns whose (first) date is the acquisition, tried in order.
_NAME_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Sentinel-2 product (compact naming): S2A_MSIL1C_<sensing start>_N0204_R065_T32UNE_<disc.>
    re.compile(rf"(?:^|[^A-Z0-9])S2[A-D]_MSIL(?:1C|2A)_{_DATE}T(?P<H>\d\d)(?P<M>\d\d)(?P<S>\d\d)"),
    # Sentinel-2 granule band file: T32TPP_<sensing start>_B02
    re.compile(rf"(?:^|[^A-Z0-9])T\d\d[A-Z]{{3}}_{_DATE}T(?P<H>\d\d)(?P<M>\d\d)(?P<S>\d\d)"),
    # Sentinel-1: S1A_IW_GRDH_1SDV_<start>_<stop>_...
    re.compile(
        rf"(?:^|[^A-Z0-9])S1[A-D]_[A-Z0-9]{{2}}_[A-Z0-9]{{3,4}}_[A-Z0-9]{{4}}_{_DATE}"
        r"T(?P<H>\d\d)(?P<M>\d\d)(?P<S>\d\d)"
    ),
    # Landsat Collection 1/2: LC08_L1TP_044034_<acquired>_<processed>_02_T1
    re.compile(rf"(?:^|[^A-Z0-9])L[COTEM]0\d_L[12][A-Z0-9]{{2}}_\d{{6}}_{_DATE}_\d{{8}}"),
    # NAIP quarter quad (USDA FSA): m_<quad>_<quarter>_<UTM zone>_<resolution>_<source image date>
    re.compile(rf"(?:^|[^A-Z0-9])M_\d{{7}}_(?:NE|NW|SE|SW)_\d{{2}}_\d{{1,3}}_{_DATE}(?!\d)"),
)
# Landsat pre-collection scene id: LC80440342014100LGN00 (year + day of year).
_LANDSAT_DOY = re.compile(
    r"(?:^|[^A-Z0-9])L[COTEM]\d\d{6}(?P<y>(?:19|20)\d\d)(?P<j>\d{3})[A-Z]{3}\d\d"
)


def _iso(groups: Mapping[str, str | None]) -> str | None:
    """ISO text of regex groups y, m, d (and H, M, S when matched); None for an invalid date."""
    values = {k: int(v) for k, v in groups.items() if v is not None}
    try:
        day = dt.date(values["y"], values["m"], values["d"])
    except (KeyError, ValueError):
        return None
    if not {"H", "M", "S"} <= values.keys():
        return day.isoformat()
    try:
        moment = dt.datetime(day.year, day.month, day.day, values["H"], values["M"], values["S"])
    except ValueError:  # 24:00 or a leap second: the day is still right
        return day.isoformat()
    return moment.isoformat()


def normalize_date(value: object) -> str | None:
    """A metadata value (``2017-02-16``, ``2017:02:16 10:21:01``, ``20170216``,
    ``2017-02-16T10:21:01.026Z``) as ISO 8601 text, or None when it is not a valid date."""
    if not isinstance(value, str):
        return None
    match = _VALUE.match(value)
    return _iso(match.groupdict()) if match else None


def date_from_tags(tags: Mapping[str, str]) -> str | None:
    """The acquisition date in a raster's metadata tags (`ACQUISITION_TAGS`, any case), or None.
    ``TIFFTAG_DATETIME`` (the file's write time) is never used."""
    upper = {str(k).upper(): v for k, v in tags.items() if str(k).upper() not in NOT_ACQUISITION}
    for key in ACQUISITION_TAGS:
        if key in upper:
            found = normalize_date(upper[key])
            if found is not None:
                return found
    return None


def acquisition_tag_date(src: Any) -> str | None:
    """The acquisition date in an open rasterio dataset's tags (default and GDAL's IMAGERY
    domain), or None."""
    tags: dict[str, str] = {}
    for domain in (None, "IMAGERY"):
        try:
            tags.update(src.tags(ns=domain) if domain else src.tags())
        except RasterioError:  # a driver without that domain
            continue
    return date_from_tags(tags)


def date_from_name(name: str | Path) -> str | None:
    """The acquisition date a Sentinel-1/-2 or Landsat product / band-file name or a NAIP quarter
    quad's file name carries, or None
    (old-style Sentinel-2 ``..._OPER_..._TL_...`` names carry the processing time only)."""
    text = Path(name).name.upper()
    for pattern in _NAME_PATTERNS:
        match = pattern.search(text)
        if match:
            return _iso(match.groupdict())
    match = _LANDSAT_DOY.search(text)
    if match:
        year, doy = int(match["y"]), int(match["j"])
        if 1 <= doy <= 366:
            day = dt.date(year, 1, 1) + dt.timedelta(days=doy - 1)
            if day.year == year:
                return day.isoformat()
    return None


def date_from_paths(paths: Iterable[str | Path]) -> str | None:
    """The first acquisition date found in the names of ``paths`` and their parent folders
    (a SAFE folder, a band folder named after its product), or None."""
    for path in paths:
        p = Path(path)
        for part in (p, *list(p.parents)[:2]):
            if part.name:
                found = date_from_name(part.name)
                if found is not None:
                    return found
    return None


def parse_user_date(text: str) -> str:
    """A user's ``--date`` (ISO 8601: ``2018-05-01`` or ``2018-05-01T10:30:00``) as ISO text.

    Raises ValueError with the fix when it is not one."""
    value = text.strip()
    try:
        if "T" in value or " " in value:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(
            f"--date {text!r} is not an ISO date: write it as YYYY-MM-DD, e.g. 2018-05-01"
        ) from None


def date_label(value: str | None) -> str | None:
    """The day part (``YYYY-MM-DD``) of an ISO date/time, as prompts name it; None stays None."""
    if value is None:
        return None
    found = normalize_date(value)
    return found[:10] if found is not None else None
