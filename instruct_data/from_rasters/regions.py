"""Tile statistics the questions are built from: class fractions, 3x3 positions, largest region."""

from __future__ import annotations

from collections import deque

import numpy as np

COMPASS = (
    ("north-west", "north", "north-east"),
    ("west", "centre", "east"),
    ("south-west", "south", "south-east"),
)
IMAGE_PARTS = (
    ("upper left", "upper part", "upper right"),
    ("left part", "centre", "right part"),
    ("lower left", "lower part", "lower right"),
)


def class_fractions(cmap: np.ndarray, valid: np.ndarray, n_classes: int) -> np.ndarray:
    """Fraction of the valid pixels in each class 1..K -> (K,) float (unlabelled not counted)."""
    n = max(int(valid.sum()), 1)
    counts = np.bincount(cmap[valid].ravel().astype(np.int64), minlength=n_classes + 1)
    return counts[1 : n_classes + 1] / n


def grid_counts(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` (H, W) in each cell of a 3x3 grid -> (3, 3) int."""
    h, w = mask.shape
    rows = np.array_split(np.arange(h), 3)
    cols = np.array_split(np.arange(w), 3)
    return np.array(
        [[int(mask[r[0] : r[-1] + 1, c[0] : c[-1] + 1].sum()) for c in cols] for r in rows]
    )


def position_phrase(mask: np.ndarray, compass: bool) -> str:
    """Where a class lies: "across the whole image", "in the north-west", "mostly in the south
    and the centre"... (compass words only for north-up images, else image-relative words)."""
    counts = grid_counts(mask)
    total = counts.sum()
    if total == 0:
        return ""
    h, w = mask.shape
    cell_area = (h / 3) * (w / 3)
    names = COMPASS if compass else IMAGE_PARTS
    if (counts / cell_area > 0.15).sum() >= 7:
        return "across the whole image"
    order = np.argsort(-counts.ravel(), kind="stable")
    picked, acc = [], 0
    for k in order:
        picked.append(k)
        acc += counts.ravel()[k]
        if acc >= 0.7 * total or len(picked) == 3:
            break
    parts = [names[k // 3][k % 3] for k in picked]
    if len(parts) == 1:
        return f"in the {parts[0]}"
    lead = "mostly " if acc < 0.85 * total else ""
    return f"{lead}in the " + ", the ".join(parts[:-1]) + f" and the {parts[-1]}"


def regions(mask: np.ndarray) -> list[tuple[int, tuple[int, int, int, int]]]:
    """Every 4-connected region of ``mask`` (H, W) -> [(pixels, (row0, col0, row1, col1))] with
    exclusive row1/col1, largest first (ties in reading order). Uses scipy.ndimage when
    installed, else a breadth-first search."""
    if not mask.any():
        return []
    try:
        from scipy import ndimage
    except ImportError:
        found = _regions_bfs(mask)
    else:
        lab, _ = ndimage.label(mask)
        found = []
        for k, sl in enumerate(ndimage.find_objects(lab), start=1):
            n = int((lab[sl] == k).sum())
            found.append((n, (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)))
    return sorted(found, key=lambda item: -item[0])


def largest_region(mask: np.ndarray) -> tuple[int, tuple[int, int, int, int]] | None:
    """Largest 4-connected region of ``mask`` (H, W) -> (pixels, (row0, col0, row1, col1)) with
    exclusive row1/col1, or None for an empty mask."""
    found = regions(mask)
    return found[0] if found else None


def count_regions(mask: np.ndarray, min_pixels: int) -> int:
    """Number of separate (4-connected) regions of ``mask`` with at least ``min_pixels``."""
    return sum(1 for n, _ in regions(mask) if n >= min_pixels)


def _regions_bfs(mask: np.ndarray) -> list[tuple[int, tuple[int, int, int, int]]]:
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    found: list[tuple[int, tuple[int, int, int, int]]] = []
    for r0, c0 in zip(*np.nonzero(mask), strict=True):
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        q = deque([(int(r0), int(c0))])
        n, rmin, cmin, rmax, cmax = 0, h, w, -1, -1
        while q:
            r, c = q.popleft()
            n += 1
            rmin, rmax, cmin, cmax = min(rmin, r), max(rmax, r), min(cmin, c), max(cmax, c)
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= rr < h and 0 <= cc < w and mask[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    q.append((rr, cc))
        found.append((n, (rmin, cmin, rmax + 1, cmax + 1)))
    return found


def percent_phrase(frac: float) -> str:
    """0.312 -> "about 30%", 0.04 -> "about 4%", 0.003 -> "less than 1%", 1.0 -> "100%"."""
    if frac >= 0.995:
        return "100%"
    if frac >= 0.975:
        return "almost 100%"
    if frac < 0.01:
        return "less than 1%"
    if frac < 0.1:
        return f"about {max(1, round(frac * 100))}%"
    return f"about {min(95, int(5 * round(frac * 20)))}%"
