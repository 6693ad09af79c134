"""The images of a multi-date question, made ready for the model: dated, in order, on one grid.

One step for every entry point that takes several images of one place (the terminal chat today;
the demo, the server and MCP are meant to call the same function): the user's dates override the
files' own (`skyeye.io.dates`), dates must not run backwards, and the images are brought onto the
first image's grid (`skyeye.io.align.align_to_first`), only their common valid area kept and,
when that is part of the first image, the images cut to its bounding box: the model sees only
what it compares (the masked rest, shown to the change decoder, had it find 11.1 ha of change
on a NAIP pair overlapping on 60 %, against 1.5 ha cut to the overlap, 2.0 ha from files cut
beforehand and 2.0 ha from `skyeye.scene`, which reads only the overlap).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine

from skyeye.io.align import align_to_first, is_georeferenced, overlap_note
from skyeye.io.dates import date_label
from skyeye.io.image import RasterImage

if TYPE_CHECKING:
    from skyeye.chat.session import ChatSession

logger = logging.getLogger(__name__)

__all__ = [
    "DatedImages",
    "attach_dated_image",
    "check_date_order",
    "is_multi_date",
    "prepare_dated_images",
    "uncut_mask",
]


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
    images = alignment.images
    if alignment.partial:
        images = _cut_to(alignment.valid, images)
    return DatedImages(images=images, overlap=alignment.overlap, note=note)


def _cut_to(valid: np.ndarray, images: Sequence[RasterImage]) -> list[RasterImage]:
    """``images`` (on one grid) cut to the bounding box of ``valid`` (H, W); each keeps the
    window it was cut from, (row, col, height, width) of the uncut grid, in
    ``extra["cut_from"]`` (`uncut_mask`)."""
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    height, width = valid.shape
    if (r0, c0, r1, c1) == (0, 0, height, width):
        return list(images)
    out = []
    for image in images:
        sh, sw = image.source_shape or (height, width)
        # Cut again (an image added to a cut group): the window on the grid before both cuts.
        pr, pc, ph, pw = image.extra.get("cut_from", (0, 0, height, width))
        out.append(
            dataclasses.replace(
                image,
                data=np.ascontiguousarray(image.data[:, r0:r1, c0:c1]),
                transform=None
                if image.transform is None
                else image.transform @ Affine.translation(c0, r0),
                # the source's full-resolution size, cut alike (decimation unchanged)
                source_shape=(round(sh * (r1 - r0) / height), round(sw * (c1 - c0) / width)),
                extra={**image.extra, "cut_from": (pr + r0, pc + c0, ph, pw)},
            )
        )
    return out


def uncut_mask(mask: np.ndarray, image: RasterImage) -> np.ndarray:
    """A mask (H, W) drawn on ``image`` as `prepare_dated_images` cut it, on the grid before the
    cut (False outside the cut); ``mask`` itself when the image was not cut."""
    cut = image.extra.get("cut_from")
    if cut is None:
        return mask
    r0, c0, height, width = cut
    out = np.zeros((height, width), dtype=mask.dtype)
    out[r0 : r0 + mask.shape[0], c0 : c0 + mask.shape[1]] = mask
    return out


def attach_dated_image(session: ChatSession, image: RasterImage) -> DatedImages:
    """Attach ``image`` to the session's next question after the images already pending for it,
    as if all had been given at once (``--image A --image B``): dated, in order, on the first
    pending image's grid (the pending images are replaced by their aligned copies). A refused
    image (dates backwards, no overlap) raises before anything in the session changes.

    Returns the `DatedImages` of the pending images with ``image`` last (its ``note``: only part
    of them is compared)."""
    pending = session.pending_images
    prepared = prepare_dated_images([*pending, image])
    session._image_tensors(prepared.images[-1])  # its band check, before the session changes
    for old, new in zip(pending, prepared.images, strict=False):
        if new is not old:
            session.replace_image(old, new)
    session.add_images([prepared.images[-1]])
    return prepared
