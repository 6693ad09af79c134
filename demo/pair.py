"""The demo's before/after pair: two uploads of one place, each with an optional date, compared
by a change answer.

Each slot ("before", "after") holds an image of the conversation (`DemoSession.entries`), so
its bands are edited like any upload's. At the next question (`prepare_pair`, called by
`DemoSession.stream` before anything is attached to the chat), the pair is dated (the date
field's, else the file's own: `skyeye.io.dates`), checked and aligned by the library's one step
for several dates (`skyeye.chat.multi_date.prepare_dated_images`: dates in order, the after image
warped onto the before image's grid, only the overlap kept) and checked for bands in common
(`skyeye.grounding.change.shared_bands`). A failed check is a `DemoError` (one chat message) and
changes nothing; only when every check passed do the two entries take their aligned images.

A new upload into a slot whose pair was already compared starts a new pair of the same
conversation: the other slot's image is attached again beside it (a second "after" against the
same "before"), so the next question's images are that pair alone.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from skyeye.chat.change_answer import DEFAULT_CHANGE_QUESTION
from skyeye.chat.multi_date import prepare_dated_images
from skyeye.errors import DemoError
from skyeye.grounding.change import shared_bands
from skyeye.io.dates import date_label, parse_user_date

if TYPE_CHECKING:
    from demo.session import DemoSession, ImageEntry

logger = logging.getLogger(__name__)

SLOTS = ("before", "after")
#: What the "What changed?" button asks (the library's change question, answered by measurement:
#: `skyeye.chat.change_answer`).
CHANGE_QUESTION = DEFAULT_CHANGE_QUESTION


@dataclass
class PairSlots:
    """Indices into `DemoSession.entries` of the before and after images (None: not uploaded)."""

    before: int | None = None
    after: int | None = None

    def get(self, slot: str) -> int | None:
        return self.before if slot == "before" else self.after

    def set(self, slot: str, index: int | None) -> None:
        if slot == "before":
            self.before = index
        else:
            self.after = index


def _other(slot: str) -> str:
    return SLOTS[1 - SLOTS.index(slot)]


def upload_to_slot(
    session: DemoSession, slot: str, path: str | Path, name: str | None = None
) -> int:
    """Read an upload into ``slot`` ("before" / "after"); returns its entry index.

    An image of the slot not yet sent is replaced; after a comparison, the upload starts a new
    pair with the other slot's image attached again (see the module doc).
    Raises `DemoError` (bad file, limits) and leaves the slots as they were.
    """
    if slot not in SLOTS:
        raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
    current = session.pair.get(slot)
    other = session.pair.get(_other(slot))
    if current is not None and not session.entries[current].sent:
        return _replace_unsent(session, current, Path(path), name)
    if other is not None and session.entries[other].sent:
        if len(session.entries) + 2 > session.config.max_images:
            raise DemoError(
                f"a new {slot} image and the {_other(slot)} image again would make "
                f"{len(session.entries) + 2} images, over this conversation's "
                f"{session.config.max_images}; press 'New conversation' to start again"
            )
    index = session.add_file(path, name)
    if other is not None and session.entries[other].sent:
        again = session.entries[other]
        session.entries.append(
            dataclasses.replace(again, image=dataclasses.replace(again.image), sent=False)
        )
        session.pair.set(_other(slot), len(session.entries) - 1)
    session.pair.set(slot, index)
    return index


def _replace_unsent(session: DemoSession, index: int, path: Path, name: str | None) -> int:
    """Put a new upload in place of entry ``index`` (not yet sent to the model)."""
    entry = session.entries.pop(index)  # the limits count the conversation without it
    try:
        added = session.entries.pop(session.add_file(path, name))
        if any(img is entry.image for img in session.chat.pending_images):
            try:  # attached to a question that failed: swap it there too
                session.chat.replace_image(entry.image, added.image)
            except ValueError as err:
                raise DemoError(f"{added.name}: {err}") from None
    except DemoError:
        session.entries.insert(index, entry)
        raise
    session.entries.insert(index, added)
    return index


def pair_dates(dates: Sequence[str | None] | None) -> list[str | None]:
    """The date fields ("" or None: the file's own date) as ISO dates, in slot order.

    Raises `DemoError` naming the field and the format."""
    out: list[str | None] = []
    for slot, text in zip(SLOTS, list(dates or [None, None]), strict=True):
        if text is None or not str(text).strip():
            out.append(None)
            continue
        try:
            out.append(parse_user_date(str(text)))
        except ValueError:
            raise DemoError(
                f"the {slot} date {str(text).strip()!r} is not a date: write it as YYYY-MM-DD, "
                "e.g. 2009-08-18, or leave it empty to use the file's own date"
            ) from None
    return out


def pending_pair(session: DemoSession) -> tuple[ImageEntry, ImageEntry] | None:
    """The (before, after) entries when both are uploaded and neither was sent yet, else None."""
    b, a = session.pair.before, session.pair.after
    if b is None or a is None:
        return None
    before, after = session.entries[b], session.entries[a]
    if before.sent or after.sent:
        return None
    return before, after


def prepare_pair(
    session: DemoSession, dates: Sequence[str | None] | None, required: bool = False
) -> str | None:
    """Date, check and align a pending pair before the question is asked (see the module doc).

    dates: the before / after date fields. required: the question is a comparison ("What
    changed?"), so a missing half is an error. Returns a note for the user (a partial overlap,
    bands only one date has), else None. Raises `DemoError`; nothing is changed then.
    """
    pair = pending_pair(session)
    if pair is None:
        missing = [s for s in SLOTS if session.pair.get(s) is None]
        if required and missing and len(missing) < len(SLOTS):
            raise DemoError(
                f"the {missing[0]} image is missing: upload it under 'Before / after', then "
                "press 'What changed?' again"
            )
        if required and len(missing) == len(SLOTS):
            raise DemoError(
                "no before/after pair yet: upload a before and an after image of one place "
                "under 'Before / after', then press 'What changed?'"
            )
        return None
    before, after = pair
    others = [e.name for e in session.entries if not e.sent and e is not before and e is not after]
    if others:
        raise DemoError(
            f"{', '.join(others)} would go with this question too, but a before/after pair is "
            "compared on its own: ask about it first, or press 'New conversation'"
        )
    days = pair_dates(dates)
    try:
        prepared = prepare_dated_images([before.image, after.image], days)
        both = prepared.images
        if len(both) == 2 and both[0].data.shape[1:] != both[1].data.shape[1:]:
            raise DemoError(  # two undated photos are not put on one grid
                f"{before.name} and {after.name} differ in size and neither has a date or a "
                "georeference: give each image its date, or upload GeoTIFFs of one place"
            )
        shared = shared_bands(both[0], both[1])
    except DemoError:
        raise
    except ValueError as err:  # dates backwards, no overlap, no band in common
        raise DemoError(str(err)) from None
    notes = [prepared.note] if prepared.note else []
    for entry, image, k in ((before, both[0], 0), (after, both[1], 1)):
        lone = [n for i, n in enumerate(image.band_names) if i not in {p[k] for p in shared}]
        if lone:
            notes.append(f"{entry.name}'s bands {', '.join(lone)} are not in the other date")
    undated = [e.name for e, im in zip(pair, both, strict=True) if im.datetime is None]
    if undated:
        notes.append(f"{' and '.join(undated)}: no date (type one in its date field)")
    b, a = session.pair.before, session.pair.after
    if b is not None and a is not None and b > a:  # the chat attaches images in entry order
        session.entries[b], session.entries[a] = after, before
        session.pair.before, session.pair.after = a, b
    for entry, image in zip(pair, both, strict=True):
        if any(img is entry.image for img in session.chat.pending_images):
            session.chat.replace_image(entry.image, image)  # a failed question kept it
        entry.image = image
    logger.info(
        "pair: %s (%s) -> %s (%s), overlap %.2f",
        before.name,
        date_label(both[0].datetime),
        after.name,
        date_label(both[1].datetime),
        prepared.overlap,
    )
    if not notes:
        return None
    text = "; ".join(notes)
    return f"{text[:1].upper()}{text[1:]}."  # file names keep their case


def pair_images(session: DemoSession) -> tuple[np.ndarray, np.ndarray] | None:
    """(before, after) for the swipe view: the two previews, the after one replaced by the last
    answer's overlay when that answer drew a change mask on it. None until both are uploaded."""
    b, a = session.pair.before, session.pair.after
    if b is None or a is None:
        return None
    after = session.preview(a)
    result = session.result
    if (
        result is not None
        and result.image_index == a
        and result.overlay is not None
        and any(p is not None for p in result.reply.mask_pairs)
    ):
        after = result.overlay
    return session.preview(b), after
