"""The images of a multi-date question, made ready for the model: dated, in order, on one grid.

One step for every entry point that takes several images of one place (the terminal chat today;
the demo, the server and MCP are meant to call the same function): the user's dates override the
files' own (`skyeye.io.dates`), dates must not run backwards, and the images are brought onto the
first image's grid (`skyeye.io.align.align_to_first`), only their common valid area kept.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from skyeye.io.align import align_to_first, is_georeferenced, overlap_note
from skyeye.io.dates import date_label
from skyeye.io.image import RasterImage

logger = logging.getLogger(__name__)

__all__ = ["DatedImages", "check_date_order", "is_multi_date", "prepare_dated_images"]


@dataclass
class DatedImages:
    """images: on the first image's grid, each with its date (``RasterImage.datetime``).
    overlap: share of the first image's valid pixels valid in every image (1.0 for one image).
    note: a sentence for the user when only part of the first image is compared, else None."""

    images: list[RasterImage]
    overlap: float = 1.0
    note: str | None = None


def is_multi_date(images: Sequence[RasterImage]) -> bool:
    """Two or more images that are dated or all georeferenced: views of one place to compare.

    Undated images without a georeference (two photos) are left as they are: nothing says they
    show one place, and the model may be asked to compare them as pictures."""
    if len(images) < 2:
        return False
    return any(im.datetime is not None for im in images) or all(map(is_georeferenced, images))


def check_date_order(dated: Sequence[tuple[str | None, str | None]]) -> None:
    """Refuse dates that run backwards: ``dated`` is (name, ISO date or None) per image, in the
    order given; undated images are not compared. Raises ValueError naming both images."""
    days = [date_label(d) for _, d in dated]
    for k in range(1, len(days)):
        before, after = days[k - 1], days[k]
        if before is not None and after is not None and after < before:
            raise ValueError(
                f"the images' dates run backwards: image {k} ({dated[k - 1][0]}) is from "
                f"{before}, image {k + 1} ({dated[k][0]}) from {after}: give the earlier "
                "image first"
            )


def _check_order(images: Sequence[RasterImage]) -> None:
    check_date_order([(im.path, im.datetime) for im in images])


def prepare_dated_images(
    images: Sequence[RasterImage], dates: Sequence[str | None] | None = None
) -> DatedImages:
    """Date, check and align the images of one question.

    images: as read (`skyeye.io.read_raster`), in the order the user gave them.
    dates: ISO dates per image (``--date``), None or missing to keep the file's own.

    Returns `DatedImages`; single images and `is_multi_date`-false groups come back unaligned.

    Raises:
        ValueError: a date count that fits neither all nor each image, dates out of order.
        NoOverlapError / AlignmentError (`RasterReadError`): no common area, or images without
            a georeference of different sizes (one line naming both images).
    """
    if dates and len(dates) != len(images):
        raise ValueError(
            f"{len(dates)} --date for {len(images)} --image: give one date per image, in order"
        )
    dated = [
        dataclasses.replace(im, datetime=d) if d is not None else im
        for im, d in zip(images, list(dates) if dates else [None] * len(images), strict=True)
    ]
    if not is_multi_date(dated):
        return DatedImages(images=list(dated))
    _check_order(dated)
    alignment = align_to_first(dated)
    note = overlap_note(alignment.overlap)
    return DatedImages(images=alignment.images, overlap=alignment.overlap, note=note)
