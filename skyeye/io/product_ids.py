"""The sensor a file's product ID names: Landsat scene and product IDs in a path.

Landsat 4-7 and Landsat 8-9 number their bands differently (B4 is near-infrared on TM / ETM+,
red on OLI), so files whose bands are named B1..B7 say which sensor they are only through the
product ID USGS puts in every file and folder name:

* Collection IDs ``LXSS_LLLL_PPPRRR_YYYYMMDD_...`` (``LC08_L1TP_016037_20170813_...``,
  ``LT05_L2SP_...``, ``LE07_...``);
* pre-collection scene IDs ``LXSPPPRRRYYYYDDDGSIVV`` (``LC80130312015295LGN00``).

X is the sensor (C: OLI/TIRS, O: OLI, T: TM, or TIRS alone on 8-9, E: ETM+, M: MSS), S the
satellite. MSS and TIRS-only products name no sensor SkyEye reads.
"""

from __future__ import annotations

import re
from pathlib import PurePath

__all__ = ["sensor_from_product_id"]

_PRODUCT_ID = re.compile(r"^L([COTEM])(?:0([4-9])_|([4-9])\d{13}[A-Z]{3}\d{2})", re.IGNORECASE)
#: (sensor letter, satellite) -> registered sensor (`skyeye.io.sensors`).
_LANDSAT = {
    ("T", "4"): "landsat-5",  # TM on Landsat 4: the same bands as Landsat 5's
    ("T", "5"): "landsat-5",
    ("E", "7"): "landsat-7",
    ("C", "8"): "landsat-8",
    ("O", "8"): "landsat-8",
    ("C", "9"): "landsat-9",
    ("O", "9"): "landsat-9",
}


def sensor_from_product_id(path: str | None) -> str | None:
    """The registered sensor that a Landsat product ID in ``path`` names (the file's name or
    any folder's), the innermost first; None without one."""
    if not path:
        return None
    for part in reversed(PurePath(path).parts):
        found = _PRODUCT_ID.match(part)
        if found is not None:
            satellite = found.group(2) or found.group(3)
            return _LANDSAT.get((found.group(1).upper(), satellite))
    return None
