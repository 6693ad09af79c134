"""OSCD (Onera Satellite Change Detection): Sentinel-2 L1C pairs of cities with urban change maps.

Layout (as in ``../shared/data/oscd-s2-change``)::

    images/<city>/imgs_1/*_B01.tif ... *_B12.tif   13 single-band GeoTIFFs per date
    images/<city>/imgs_2/*_B01.tif ...
    images/<city>/dates.txt                         "date_1: 20150704" / "date_2: 20180211"
    labels/<city>/cm/<city>-cm.tif                  uint8, 1 no change, 2 change (imgs_1's 10 m grid)

The label has no georeference: it is imgs_1's 10 m pixel grid. For two cities (hongkong,
saclay_e) imgs_2 is 2 px smaller on the same bounds; OSCD's own convention (and SOURCE.txt's)
is to crop every raster to the common size from the top-left, so that is done here, not a warp
(which would stretch the second date by a fraction of a pixel against the label).
Dates come from dates.txt: the first date's file names are old-style tile names whose date is
the processing time.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio

from instruct_data.change.licences import get_licence
from instruct_data.change.pairs import ChangePair, Transition
from skyeye.errors import ImagePathError, RasterReadError, SkipRecord, UnsafePathError
from skyeye.io.paths import resolve_image, resolve_under_root
from skyeye.io.raster import read_raster

logger = logging.getLogger(__name__)

SOURCE = "oscd-s2-change"
_DATE_LINE = re.compile(r"^\s*date_([12])\s*:\s*(\d{4})(\d{2})(\d{2})\s*$")


def read_dates(path: Path) -> tuple[str | None, str | None]:
    """dates.txt -> (ISO date 1, ISO date 2); a missing or unreadable line gives None."""
    found: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _DATE_LINE.match(line)
            if m:
                found[m[1]] = f"{m[2]}-{m[3]}-{m[4]}"
    return found.get("1"), found.get("2")


def list_cities(root: Path) -> list[str]:
    """Cities with an images folder."""
    return sorted(p.name for p in (root / "images").iterdir() if p.is_dir())


def read_city(root: Path, city: str, split: str) -> ChangePair:
    """One city as a change pair; SkipRecord naming what is missing or unreadable."""
    try:
        # paths stay inside the data root (skyeye.io.paths), whatever a folder name holds
        folders = [resolve_image(f"images/{city}/imgs_{k}", root) for k in (1, 2)]
        label_path = resolve_image(f"labels/{city}/cm/{city}-cm.tif", root)
        before = read_raster(folders[0], sensor="sentinel-2")  # type: ignore[arg-type]
        after = read_raster(folders[1], sensor="sentinel-2")  # type: ignore[arg-type]
        with rasterio.open(label_path) as src:  # type: ignore[arg-type]
            label = src.read(1)
    except (ImagePathError, UnsafePathError) as err:
        raise SkipRecord("missing image", f"{city}: {err}") from None
    except (RasterReadError, rasterio.errors.RasterioError, OSError) as err:
        raise SkipRecord("unreadable image", f"{city}: {err}") from None
    h = min(before.data.shape[1], after.data.shape[1], label.shape[0])
    w = min(before.data.shape[2], after.data.shape[2], label.shape[1])
    if (h, w) != label.shape:
        logger.info("%s: cropped to the common %dx%d px (label %s)", city, h, w, label.shape)
    before = dataclasses.replace(before, data=before.data[:, :h, :w])
    after = dataclasses.replace(
        after, data=after.data[:, :h, :w], crs=before.crs, transform=before.transform
    )
    label = label[:h, :w]
    valid = np.isin(label, (1, 2)) & before.valid_mask & after.valid_mask
    change = label == 2
    return ChangePair(
        source=SOURCE,
        pair_id=city,
        before=before,
        after=after,
        change=change,
        valid=valid,
        dates=read_dates(resolve_under_root(f"images/{city}/dates.txt", root)),
        kinds="new buildings, roads and other urban construction",
        licence=get_licence(SOURCE),
        label_source="OSCD hand-made urban change map (Daudt et al. 2018)",
        split=split,
        transitions=[Transition("buildings", "appeared", change, "new buildings", "was built")],
        how_much="urban area was built",
        extra_meta={"city": city},
    )


def oscd_pairs(root: Path, val: list[str]) -> Iterator[ChangePair | SkipRecord]:
    """Every city of an OSCD folder (val cities with split "val"); a bad city comes out as a
    SkipRecord for the caller to count."""
    for city in list_cities(root):
        try:
            yield read_city(root, city, "val" if city in val else "train")
        except SkipRecord as skip:
            yield skip
