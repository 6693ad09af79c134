"""SZTAKI AirChange: registered aerial RGB pairs (1.5 m) with hand-drawn binary change masks.

Layout (``../shared/data/sztaki-airchange``)::

    <site>/<n>/im1.png, im2.png, gt.png   (site Szada, Tiszadob, Archieve; gt 0 / 255)

The photos have no georeference or dates (5 to 23 years apart): the pair is taken as aligned
(same size, checked), areas come from the 1.5 m pixel, and the prompt names no dates. The masks
mark new built-up areas, building works, tree planting, fresh ploughland and groundwork.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from instruct_data.change.licences import get_licence
from instruct_data.change.pairs import ChangePair
from skyeye.errors import ImagePathError, RasterReadError, SkipRecord, UnsafePathError
from skyeye.io.align import align_to_first
from skyeye.io.paths import resolve_image
from skyeye.io.raster import read_raster

SOURCE = "sztaki-airchange"
GSD_M = 1.5
RGB_WAVELENGTHS = [0.665, 0.56, 0.49]


def list_pairs(root: Path) -> list[str]:
    """``site/n`` of every folder holding im1, im2 and gt."""
    return sorted(
        f"{p.parent.name}/{p.name}"
        for p in root.glob("*/*")
        if p.is_dir() and all((p / f).is_file() for f in ("im1.png", "im2.png", "gt.png"))
    )


def read_pair(root: Path, pair_id: str, split: str) -> ChangePair:
    """One AirChange pair; SkipRecord naming the problem."""
    try:
        # paths stay inside the data root (skyeye.io.paths)
        files = [resolve_image(f"{pair_id}/{name}", root) for name in ("im1.png", "im2.png")]
        gt_path = resolve_image(f"{pair_id}/gt.png", root)
        images = [
            read_raster(f, band_names=["R", "G", "B"], wavelengths=RGB_WAVELENGTHS)  # type: ignore[arg-type]
            for f in files
        ]
        aligned = align_to_first(images)  # no georeference: checks the sizes agree
        with Image.open(gt_path) as gt_image:  # type: ignore[arg-type]
            gt = np.asarray(gt_image.convert("L"))
    except (ImagePathError, UnsafePathError) as err:
        raise SkipRecord("missing image", f"{pair_id}: {err}") from None
    except (RasterReadError, OSError) as err:
        raise SkipRecord("unreadable image", f"{pair_id}: {err}") from None
    if gt.shape != aligned.valid.shape:
        raise SkipRecord(
            "label size mismatch", f"{pair_id}: gt {gt.shape} vs {aligned.valid.shape}"
        )
    change = gt > 127  # two masks hold a few stray grey pixels (SOURCE.txt)
    before, after = aligned.images
    return ChangePair(
        source=SOURCE,
        pair_id=pair_id,
        before=before,
        after=after,
        change=change,
        valid=aligned.valid,
        dates=(None, None),
        kinds="new built-up areas, building works, tree planting or fresh ploughland",
        licence=get_licence(SOURCE),
        label_source="SZTAKI AirChange hand-drawn change mask (Benedek & Sziranyi 2009)",
        split=split,
        how_much="land changed",
        gsd_m=GSD_M,
        extra_meta={"site": pair_id.split("/")[0]},
        # 8-bit photos: read as a user's PNG is (/255), not stretched per band, so the decoder
        # learns change on the values the chat will see (per-band-stretched training tiles drew
        # 0.0 % change on the same pairs given as PNGs).
        sensor="rgb",
    )


def airchange_pairs(root: Path, val: list[str]) -> Iterator[ChangePair | SkipRecord]:
    """Every pair (val pairs with split "val"); a bad pair comes out as a SkipRecord."""
    for pair_id in list_pairs(root):
        try:
            yield read_pair(root, pair_id, "val" if pair_id in val else "train")
        except SkipRecord as skip:
            yield skip
