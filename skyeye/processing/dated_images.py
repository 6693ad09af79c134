"""How a multi-date question names its images' dates: one rule for the chat and the training data.

A user turn with two or more images, at least one of them dated, reads::

    Image 1 (2018-05-01): <image>
    Image 2 (2020-06-01): <image>
    What changed?

(an undated image of such a turn is ``Image k: <image>``). A turn with one image, or with images
none of which is dated, keeps the plain ``<image>\\n`` form of every existing record (TerraScope's
pre/post pairs), so records and prompts written before dates existed render exactly as before.
The chat builds the turn as content parts (`dated_image_parts`) and the converters as record text
(`dated_image_text`); `skyeye.processing.chat_encoding` joins adjacent text parts, so both encode
to the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skyeye.constants import IMAGE_TOKEN
from skyeye.io.dates import date_label

__all__ = ["dated_image_parts", "dated_image_text", "image_prefixes"]


def image_prefixes(dates: Sequence[str | None]) -> list[str]:
    """The text before each image of one turn: ``"Image k (YYYY-MM-DD): "`` / ``"Image k: "``
    when the turn has two or more images and some date, else ``""`` for every image."""
    days = [date_label(d) for d in dates]
    if len(days) < 2 or all(d is None for d in days):
        return [""] * len(days)
    return [
        f"Image {k} ({day}): " if day is not None else f"Image {k}: "
        for k, day in enumerate(days, 1)
    ]


def dated_image_parts(dates: Sequence[str | None]) -> list[dict[str, Any]]:
    """Content parts placing one image per date, each with its prefix and a newline after it
    (the question's text part follows)."""
    parts: list[dict[str, Any]] = []
    for prefix in image_prefixes(dates):
        if prefix:
            parts.append({"type": "text", "text": prefix})
        parts += [{"type": "image"}, {"type": "text", "text": "\n"}]
    return parts


def dated_image_text(dates: Sequence[str | None], image_token: str = IMAGE_TOKEN) -> str:
    """The same as record text: ``"Image 1 (2018-05-01): <image>\\nImage 2 (...): <image>\\n"``."""
    return "".join(f"{prefix}{image_token}\n" for prefix in image_prefixes(dates))
