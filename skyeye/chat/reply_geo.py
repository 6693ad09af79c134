"""Boxes and masks of a `ChatReply` as JSON: the `skyeye` extension of the API server and MCP.

Masks (and boxes) of a georeferenced image are GeoJSON in EPSG:4326 with the area the session
measured on the raster's grid (`skyeye.grounding.geo.mask_area`); a mask's polygons come from
the one polygoniser (`skyeye.grounding.polygons`, via `masks_to_geojson`), so they are the
scene's polygons of the same mask, with each polygon's area and its `area_method`.
On a photo without georeference they come back in pixels only. A change answer
(`skyeye.chat.change_answer`) adds ``change``: its measured figures (`change_summary`) and the
change mask's GeoJSON feature.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skyeye.chat.change_answer import change_summary
from skyeye.chat.session import ChatReply
from skyeye.grounding.geo import (
    MaskArea,
    boxes_to_geojson,
    masks_to_geojson,
    transform_for_shape,
)
from skyeye.grounding.polygons import on_earth
from skyeye.io.raster import RasterImage


def _mask_entry(
    k: int, mask: np.ndarray, area: MaskArea, phrase: str | None, index: int, image: RasterImage
) -> dict[str, Any]:
    """One mask as JSON; share and area are the session's measurement (`ChatReply.mask_areas`)."""
    entry: dict[str, Any] = {
        "index": k,
        "phrase": phrase,
        "image": index,
        "shape": [int(mask.shape[0]), int(mask.shape[1])],
        "pixel_count": int(mask.sum()),
        "fraction_of_valid_pixels": area.share,
        "area_m2": area.m2,
        "geojson": None,
    }
    if image.transform is not None and on_earth(image.crs):  # a local grid has no lon/lat
        h, w = image.data.shape[1:]
        transform = transform_for_shape(image.transform, (h, w), mask.shape)
        fc = masks_to_geojson(
            mask[None], [phrase], transform=transform, crs=image.crs, to_epsg4326=True
        )
        feature = fc["features"][0]
        feature["properties"]["area_m2"] = area.m2
        entry["geojson"] = feature
    return entry


def reply_extension(reply: ChatReply, images: list[RasterImage]) -> dict[str, Any]:
    """``{"raw": str, "boxes": [...], "boxes_geojson": FC|None, "masks": [...],
    "masks_geojson": FC|None, "change": {...}|None}``.

    raw: the answer in the model's grammar (``<p>water</p> [SEG] Yes. (measured ...)``), as the
    conversation keeps it; the message text is its readable sentence. Boxes refer to the latest
    image (the one the question was about); masks name their image. change: a change answer's
    `change_summary` plus ``geojson``, the change mask's feature (None off the Earth), else None.
    """
    out: dict[str, Any] = {
        "raw": reply.text,
        "boxes": [
            {"box": [b.x1, b.y1, b.x2, b.y2], "angle": b.angle, "phrase": b.phrase}
            for b in reply.boxes
        ],
        "boxes_geojson": None,
        "masks": [],
        "masks_geojson": None,
    }
    image = images[-1] if images else None
    if reply.boxes and image is not None and image.transform is not None and on_earth(image.crs):
        out["boxes_geojson"] = boxes_to_geojson(
            reply.boxes,
            transform=image.transform,
            crs=image.crs,
            image_shape=image.data.shape[1:],
            to_epsg4326=True,
        )
    for k, mask in enumerate(reply.masks):
        index = reply.mask_images[k] if k < len(reply.mask_images) else len(images) - 1
        phrase = reply.mask_phrases[k] if k < len(reply.mask_phrases) else None
        area = reply.mask_areas[k]
        entry = _mask_entry(k, np.asarray(mask, bool), area, phrase, index, images[index])
        out["masks"].append(entry)
    features = [m["geojson"] for m in out["masks"] if m["geojson"] is not None]
    if features:
        out["masks_geojson"] = {"type": "FeatureCollection", "features": features}
    change = change_summary(reply)
    if change is not None:
        change["geojson"] = out["masks"][change["mask"]]["geojson"]
    out["change"] = change
    return out
