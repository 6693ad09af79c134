"""A mask -> its instances: connected regions, touching compact objects split, one box each.

"How many aircraft?" is answered by counting what the mask holds, as tool-using assistants do
(Change-Agent counts connected components): regions of at least ``min_pixels`` (8-connected), and
inside a region, compact blobs that merely touch (two aircraft wing to wing, two round ponds
joined by a narrow neck) are separated by a watershed on the distance transform. Two basins stay
apart only where the lower peak stands at least ``split_depth`` of its height above the saddle
between them, so an elongated shape (a river) whose ridge only wavers is kept whole.

Which rule a class gets is decided here, once (`splits_touching`): the watershed split is for
compact objects (aircraft, buildings, vehicles). Water bodies, clouds, fields, vegetation and
the other land-cover classes in `REGION_CLASSES` are regions: one connected region is one
instance however it is shaped (a split turned 15 hand-drawn clouds into 22 instances).

Boxes are `GroundedBox` on the 0..1 grid the parsers use (x right, y down), axis-aligned, or the
instance's minimum-area rectangle with its angle (`rotated=True`, for ``{<x1><y1><x2><y2>|θ}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skyeye.grounding.parse import GroundedBox

#: Smallest region counted, in pixels of the mask's grid (specks of a noisy mask are not objects).
DEFAULT_MIN_PIXELS = 4
#: How deep the saddle between two peaks of the distance transform must be, as a share of the
#: lower peak, for them to be two objects (0.3: two discs of radius r touching through a neck
#: narrower than 0.7 r; a river's ridge wavers by ~10 %).
DEFAULT_SPLIT_DEPTH = 0.3


#: Mask classes that are regions, not compact objects: counted as 8-connected regions of at least
#: the minimum size, never split (two lakes joined by a channel are one water body, as the
#: held-out references count them, `instruct_data.objects.heldout_regions`). Every other class
#: (aircraft, building, vehicle, or no class named) is a compact object: touching ones split.
REGION_CLASSES: frozenset[str] = frozenset({
    "water", "water body", "lake", "river", "pond", "reservoir", "cloud", "cloud shadow",
    "cloud-free land", "vegetation", "cultivated land", "field", "forest", "grassland",
    "shrubland", "wetland", "artificial surface", "bare land", "snow and ice", "farmland",
    "meadow", "scrubland", "residential area",
})  # fmt: skip


def splits_touching(phrase: str | None) -> bool:
    """Whether touching blobs of the class ``phrase`` are separate instances: False for a region
    class (`REGION_CLASSES`, singular or plural, any case), True for compact objects and for an
    unnamed mask."""
    if phrase is None:
        return True
    name = " ".join(phrase.lower().split())
    forms = {name, name[:-1] if name.endswith("s") else name}
    if name.endswith("ies"):
        forms.add(name[:-3] + "y")
    return not (forms & REGION_CLASSES)


@dataclass(frozen=True)
class Instance:
    """One object of a mask: its label in `label_instances`' array, pixel count and box."""

    label: int
    pixels: int
    box: GroundedBox


def label_instances(
    mask: np.ndarray,
    *,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    split_touching: bool = True,
    split_depth: float = DEFAULT_SPLIT_DEPTH,
) -> np.ndarray:
    """(H, W) bool mask -> (H, W) int32 labels 1..N (0 = background or dropped specks).

    Labels follow the raster order of each instance's first pixel, so the same mask always gives
    the same numbering.
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    regions, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    out = np.zeros(mask.shape, np.int32)
    next_label = 1
    for index, where in enumerate(ndimage.find_objects(regions), start=1):
        if where is None:
            continue
        region = regions[where] == index
        if int(region.sum()) < min_pixels:
            continue
        parts = _split(region, split_depth) if split_touching else region.astype(np.int32)
        for part in range(1, int(parts.max()) + 1):
            piece = parts == part
            if int(piece.sum()) < min_pixels:
                continue
            out[where][piece] = next_label
            next_label += 1
    return _renumber(out)


def _split(region: np.ndarray, depth: float) -> np.ndarray:
    """One connected region -> labels of its compact parts.

    The watershed of the distance transform from every local maximum over-splits (a river's
    ridge has many); neighbouring basins are then merged, lowest saddle last, unless the lower
    of their two peaks stands more than ``depth`` x its own height above the saddle between them.
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    padded = np.pad(region, 1)  # the region's border counts as background for the distances
    dist = ndimage.distance_transform_edt(padded)
    peaks = (dist == ndimage.maximum_filter(dist, size=3)) & padded
    markers, found = ndimage.label(peaks, structure=np.ones((3, 3), bool))
    if found <= 1:
        return region.astype(np.int32)
    basins = watershed(-dist, markers, mask=padded)
    top = ndimage.maximum(dist, basins, index=np.arange(found + 1))
    parent = np.arange(found + 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for saddle, a, b in _saddles(basins, dist):
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        low = min(top[ra], top[rb])
        if low - saddle < depth * low:  # a shallow dent, not two objects
            keep, gone = (ra, rb) if top[ra] >= top[rb] else (rb, ra)
            parent[gone] = keep
    merged = np.array([root(i) for i in range(found + 1)])[basins]
    return merged[1:-1, 1:-1].astype(np.int32)


def _saddles(basins: np.ndarray, dist: np.ndarray) -> list[tuple[float, int, int]]:
    """(saddle height, basin a, basin b) of every pair of touching basins, highest first: the
    highest of min(dist) over the pixel pairs across their border (8-neighbours)."""
    best: dict[tuple[int, int], float] = {}
    h, w = basins.shape
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = basins[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
        b = basins[max(0, dy) : h, max(0, dx) : w - max(0, -dx)]
        da = dist[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
        db = dist[max(0, dy) : h, max(0, dx) : w - max(0, -dx)]
        across = (a != b) & (a > 0) & (b > 0)
        low = np.minimum(da, db)[across]
        for x, y, v in zip(a[across], b[across], low, strict=True):
            key = (int(min(x, y)), int(max(x, y)))
            if v > best.get(key, -1.0):
                best[key] = float(v)
    return sorted(((v, a, b) for (a, b), v in best.items()), reverse=True)


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..N in raster order of each label's first pixel."""
    flat = labels.ravel()
    seen, first = np.unique(flat[flat > 0], return_index=True)
    if seen.size == 0:
        return labels
    order = seen[np.argsort(np.flatnonzero(flat > 0)[first])]
    lookup = np.zeros(int(labels.max()) + 1, np.int32)
    lookup[order] = np.arange(1, order.size + 1, dtype=np.int32)
    return lookup[labels]


def instance_boxes(
    labels: np.ndarray, *, rotated: bool = False, phrase: str | None = None
) -> list[Instance]:
    """One `Instance` per label of ``labels`` (H, W), boxes on the 0..1 grid of the array."""
    from scipy import ndimage

    h, w = labels.shape
    out: list[Instance] = []
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        piece = labels[where] == index
        ys, xs = where
        if rotated:
            box = _rotated_box(piece, xs.start, ys.start, w, h, phrase)
        else:
            box = GroundedBox(xs.start / w, ys.start / h, xs.stop / w, ys.stop / h, phrase=phrase)
        out.append(Instance(label=index, pixels=int(piece.sum()), box=box))
    return out


def _rotated_box(
    piece: np.ndarray, x0: int, y0: int, w: int, h: int, phrase: str | None
) -> GroundedBox:
    """The minimum-area rectangle around the pixel squares of ``piece`` as a centred box plus
    angle (degrees, counter-clockwise on screen, the `box_corners` convention), in [-45, 45)."""
    import shapely

    ys, xs = np.nonzero(piece)
    corners = np.concatenate(
        [np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)]
    ).astype(float) + (x0, y0)
    rect = shapely.MultiPoint(corners).minimum_rotated_rectangle
    pts = np.asarray(rect.exterior.coords)[:4]
    edge = pts[1] - pts[0]
    # Screen angle of the first edge (y down, counter-clockwise positive), folded into [-45, 45)
    # so the box's width is the edge nearest to horizontal.
    angle = -math.degrees(math.atan2(edge[1], edge[0]))
    angle = (angle + 45.0) % 90.0 - 45.0
    t = math.radians(angle)
    # Extents along the rectangle's own axes: project the corners on the rotated x and y axes.
    ux, uy = np.array([math.cos(t), -math.sin(t)]), np.array([math.sin(t), math.cos(t)])
    along, across = pts @ ux, pts @ uy
    cx, cy = pts.mean(axis=0)
    half_w, half_h = (along.max() - along.min()) / 2, (across.max() - across.min()) / 2
    return GroundedBox(
        (cx - half_w) / w,
        (cy - half_h) / h,
        (cx + half_w) / w,
        (cy + half_h) / h,
        angle=round(angle, 1) if abs(angle) >= 0.05 else None,
        phrase=phrase,
    )


def mask_instances(
    mask: np.ndarray,
    *,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    split_touching: bool | None = None,
    rotated: bool = False,
    phrase: str | None = None,
) -> list[Instance]:
    """(H, W) bool mask -> its instances with boxes: `label_instances` then `instance_boxes`.

    ``split_touching`` None: the class rule, `splits_touching(phrase)`."""
    if split_touching is None:
        split_touching = splits_touching(phrase)
    labels = label_instances(mask, min_pixels=min_pixels, split_touching=split_touching)
    return instance_boxes(labels, rotated=rotated, phrase=phrase)
