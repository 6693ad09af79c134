"""Boxes in text: ``{<x1><y1><x2><y2>}`` on a 0-100 grid, optional ``|<θ>``, beside normalised xyxy.

Several boxes are written ``{…}{…}``; SkyEyeGPT joins them with ``<delim>`` and LHRS-style text uses
``[x1, y1, x2, y2]``. This module is deliberately small: it serves the converters only (the model's
output parser lives in ``skyeye.grounding``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skyeye.errors import BoxParseError

GRID = 100
# A strict box: four integers, optional angle in degrees.
BOX_RE = re.compile(
    r"\{<(\d{1,3})><(\d{1,3})><(\d{1,3})><(\d{1,3})>(?:\|<(-?\d{1,3}(?:\.\d+)?)>)?\}"
)
# Anything that looks like it tries to be a box (used to detect malformed ones).
BOX_LIKE_RE = re.compile(r"\{\s*<[^{}]*\}")
DELIM_RE = re.compile(r"\}\s*<delim>\s*\{")
LHRS_RE = re.compile(
    r"\[\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*\]"
)


@dataclass(frozen=True)
class Box:
    """One box: ``xyxy`` normalised to [0, 1] of the image, optional angle (degrees), its text form."""

    xyxy: tuple[float, float, float, float]
    text: str
    angle: float | None = None
    image_index: int = 0

    def to_dict(self) -> dict:
        d: dict = {"xyxy": [round(v, 6) for v in self.xyxy], "text": self.text}
        if self.angle is not None:
            d["angle"] = self.angle
        if self.image_index:
            d["image_index"] = self.image_index
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Box:
        return cls(
            xyxy=tuple(float(v) for v in d["xyxy"]),  # type: ignore[arg-type]
            text=d["text"],
            angle=d.get("angle"),
            image_index=int(d.get("image_index", 0)),
        )


def format_box(
    xyxy: tuple[float, float, float, float] | list[float], angle: float | None = None
) -> str:
    """Normalised xyxy (0..1) -> ``{<x1><y1><x2><y2>}`` on the 0-100 grid (``|<θ>`` when angled)."""
    ints = [min(GRID, max(0, round(v * GRID))) for v in xyxy]
    text = "{" + "".join(f"<{v}>" for v in ints)
    if angle is not None:
        a = int(angle) if float(angle).is_integer() else angle
        text += f"|<{a}>"
    return text + "}"


def canonical_box_text(text: str) -> str:
    """Join ``{…}<delim>{…}`` into the DESIGN.md form ``{…}{…}``."""
    return DELIM_RE.sub("}{", text)


def parse_boxes(text: str, image_index: int = 0) -> list[Box]:
    """Every ``{<x1><y1><x2><y2>[|<θ>]}`` in ``text``, in order.

    Raises BoxParseError when a box-like token is malformed (wrong count of numbers,
    coordinates above 100, x2 < x1 or y2 < y1), so a converter can skip the record.
    """
    boxes: list[Box] = []
    for cand in BOX_LIKE_RE.finditer(text):
        m = BOX_RE.fullmatch(cand.group(0))
        if m is None:
            raise BoxParseError(f"malformed box {cand.group(0)!r}")
        x1, y1, x2, y2 = (int(g) for g in m.groups()[:4])
        if max(x1, y1, x2, y2) > GRID or x2 < x1 or y2 < y1:
            raise BoxParseError(f"box {cand.group(0)!r} is outside the 0-{GRID} grid or inverted")
        angle = float(m.group(5)) if m.group(5) is not None else None
        boxes.append(
            Box(
                xyxy=(x1 / GRID, y1 / GRID, x2 / GRID, y2 / GRID),
                text=m.group(0),
                angle=angle,
                image_index=image_index,
            )
        )
    return boxes


def count_box_tokens(text: str) -> int:
    """Number of box-like tokens in ``text`` (valid or not)."""
    return len(BOX_LIKE_RE.findall(text))


def lhrs_to_box_text(text: str, grid: float = GRID) -> str:
    """Rewrite LHRS-style ``[x1, y1, x2, y2]`` (on ``grid``) into ``{<x1><y1><x2><y2>}``."""

    def repl(m: re.Match) -> str:
        vals = [float(g) / grid for g in m.groups()]
        if any(v < 0 or v > 1 for v in vals) or vals[2] < vals[0] or vals[3] < vals[1]:
            raise BoxParseError(f"box {m.group(0)!r} is outside the 0-{grid:g} grid or inverted")
        return format_box(vals)  # type: ignore[arg-type]

    return LHRS_RE.sub(repl, text)


def pixel_xywh_to_xyxy(
    bbox: list[float], width: int, height: int
) -> tuple[float, float, float, float]:
    """COCO/RefCOCO pixel ``[x, y, w, h]`` -> normalised xyxy, clipped to the image."""
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0 or width <= 0 or height <= 0:
        raise BoxParseError(f"bbox {bbox} has negative size or the image size is unknown")
    clip = lambda v: min(1.0, max(0.0, v))  # noqa: E731
    return (clip(x / width), clip(y / height), clip((x + w) / width), clip((y + h) / height))
