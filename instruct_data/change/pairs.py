"""Labelled change pairs -> tile pairs (GeoTIFFs) -> change conversations in the unified format.

A `ChangePair` is two images of one place on one grid (before, after), the change mask and what
the change is (a phrase, optional per-class transitions); `PairRecords` cuts it into tiles,
writes each tile's two dates (written under a temporary name and renamed) and describes each tile
with the change templates: a multi-image record (``time`` pre/post, the dates in the user text by
`skyeye.processing.dated_images`), the change mask as the ``[SEG]`` of the answer, on the after
image. Every record carries its licence (``meta.licence``, ``meta.commercial_use``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine

from instruct_data.change import templates as T
from instruct_data.change.licences import Licence
from instruct_data.from_rasters.tiling import tile_windows, write_tile
from instruct_data.schema import Conversation, ImageRef, Mask, Turn
from skyeye.chat.change_answer import GENERAL_PHRASE
from skyeye.grounding.geo import mask_area
from skyeye.io.image import RasterImage
from skyeye.io.rle import encode_mask
from skyeye.processing.dated_images import dated_image_text

logger = logging.getLogger(__name__)


@dataclass
class Transition:
    """One class's change: ``kind`` "appeared" / "disappeared", its (H, W) bool ``mask``, the
    answer's phrase (``"new buildings"``) and the how-much wording (``"was built"``)."""

    cls: str
    kind: str
    mask: np.ndarray
    phrase: str
    how_much: str


@dataclass
class ChangePair:
    """Two dates of one place on one grid and their labelled change.

    before / after: data (C, H, W) on one grid. change: (H, W) bool. valid: (H, W) bool, pixels
    labelled and with data on both dates. dates: ISO dates or None. kinds: what such change is,
    for the "what changed" answer (whose mask every pair calls by the chat's general change
    phrase, `GENERAL_PHRASE`, the one it forces for "what changed?": the change decoder is
    trained on the `[SEG]` state the chat sends it; a dataset's own name for its change, "urban
    change", is never asked by the chat).
    how_much: wording of the total ("land changed"), or None. gsd_m: pixel size for areas when
    the grid has no georeference. sensor: the registered sensor the records name, so the tiles
    are read with its value scaling ("rgb": 8-bit photos, /255, as a user's PNG is read) rather
    than the per-band stretch that band names alone get.
    """

    source: str
    pair_id: str
    before: RasterImage
    after: RasterImage
    change: np.ndarray
    valid: np.ndarray
    dates: tuple[str | None, str | None]
    kinds: str
    licence: Licence
    label_source: str
    split: str = "train"
    transitions: list[Transition] = field(default_factory=list)
    how_much: str | None = None
    gsd_m: float | None = None
    extra_meta: dict = field(default_factory=dict)
    sensor: str | None = None


def modality(img: RasterImage) -> str:
    return "optical" if img.data.shape[0] <= 3 else "multispectral"


class PairRecords:
    """Tiles and conversations of change pairs.

    out_dir: receives ``images/<source>/<pair>/<tile>_t1.tif|_t2.tif``; record paths are
    relative to it. tile_size / stride: px; min_valid: share of a tile's pixels that must be
    valid (labelled, data on both dates). seed: the templates' draws depend only on it and ids.
    tag: put before the tile ids ("s512r00000c00000") of a second tiling of the same pairs;
    min_side: px, pairs smaller than this a side are not tiled (a second tiling would repeat
    the first one's tiles).
    """

    def __init__(
        self,
        out_dir: Path,
        tile_size: int,
        stride: int,
        min_valid: float = 0.9,
        seed: int = 0,
        tag: str = "",
        min_side: int = 0,
    ) -> None:
        self.out, self.size, self.stride = Path(out_dir), tile_size, stride
        self.min_valid, self.seed, self.tag, self.min_side = min_valid, seed, tag, min_side
        self.skipped: Counter = Counter()
        self.tiles = 0

    def records(self, pair: ChangePair) -> Iterator[Conversation]:
        """Conversations of every tile of ``pair`` (tiles too small or invalid are counted)."""
        h, w = pair.change.shape
        if min(h, w) < self.min_side:
            return
        size = min(self.size, h, w)
        for r, c in tile_windows(h, w, size, min(self.stride, size)):
            window = (slice(r, r + size), slice(c, c + size))
            valid = pair.valid[window]
            if valid.mean() < self.min_valid:
                self.skipped["too little valid data"] += 1
                continue
            yield from self._tile(pair, r, c, size, window, valid)

    def _tile(self, pair, r, c, size, window, valid) -> Iterator[Conversation]:
        from instruct_data.from_rasters.generate import stable_rng

        tile_id = f"{self.tag}r{r:05d}c{c:05d}"
        safe_pair = pair.pair_id.replace("/", "-")
        rng = stable_rng(self.seed, pair.source, pair.pair_id, tile_id)
        transform = (
            pair.before.transform @ Affine.translation(c, r) if pair.before.transform else None
        )
        refs = []
        for k, (img, time) in enumerate(((pair.before, "pre"), (pair.after, "post")), 1):
            data = img.data[(slice(None), *window)]
            rel = Path("images") / pair.source / safe_pair / f"{tile_id}_t{k}.tif"
            # Georeferenced only when both the CRS and the tile's transform are known.
            georef = img.crs is not None and transform is not None
            write_tile(
                self.out / rel,
                data,
                img.band_names,
                img.crs if georef else None,
                transform if georef else None,
            )
            refs.append(
                ImageRef(
                    path=rel.as_posix(),
                    modality=modality(img),
                    band_names=list(img.band_names),
                    wavelengths=list(img.wavelengths) if img.wavelengths else None,
                    time=time,
                    size=[size, size],
                    sensor=pair.sensor,
                )
            )
        self.tiles += 1
        change = pair.change[window] & valid
        area = mask_area(change, transform=transform, crs=pair.before.crs, valid=valid)
        ha = _hectares(change, pair, transform, valid)
        meta = {
            "generator": "change",
            "dataset": pair.source,
            "pair_id": pair.pair_id,
            "split": pair.split,
            "tile": {"row": r, "col": c, "size": size},
            "dates": list(pair.dates),
            "change_share": round(area.share, 6),
            "label_source": pair.label_source,
            **pair.licence.meta(),
            **pair.extra_meta,
        }
        head = dated_image_text(list(pair.dates))
        base = f"{pair.source}:{pair.pair_id}:{tile_id}"
        qa: list[tuple[str, str, str, np.ndarray]] = []  # (id suffix, question, answer, mask)
        texts = [
            f"{t.cls} {t.kind} ({T.hectares(_hectares(t.mask[window] & valid, pair, transform, valid) or 0.0)})"
            for t in pair.transitions
            if (t.mask[window] & valid).any() and ha is not None
        ]
        qa.append(
            (
                "what",
                T.pick(rng, T.WHAT_CHANGED),
                T.what_changed_answer(GENERAL_PHRASE, area.share, ha, pair.kinds, texts),
                change,
            )
        )
        anything = T.anything_answer(GENERAL_PHRASE, area.share)
        if anything is not None:
            qa.append(("any", T.pick(rng, T.ANYTHING), anything, change))
        if pair.how_much and ha is not None and area.share > 0:
            qa.append(
                (
                    "much",
                    T.pick(rng, T.HOW_MUCH, what=pair.how_much),
                    f"{T.seg(GENERAL_PHRASE)} About {T.hectares(ha)}.",
                    change,
                )
            )
        for t in pair.transitions:
            mask = t.mask[window] & valid
            if not mask.any():
                continue
            prompts = T.SHOW_APPEARED if t.kind == "appeared" else T.SHOW_DISAPPEARED
            qa.append((f"{t.kind}-{t.cls}", T.pick(rng, prompts, cls=t.cls), T.seg(t.phrase), mask))
            if ha is not None:
                qa.append(
                    (
                        f"much-{t.cls}",
                        T.pick(rng, T.HOW_MUCH, what=t.how_much),
                        f"{T.seg(t.phrase)} About {T.hectares(_hectares(mask, pair, transform, valid) or 0.0)}.",
                        mask,
                    )
                )
        for suffix, question, answer, mask in qa:
            yield Conversation(
                id=f"{base}:{suffix}",
                source=pair.source,
                task="change",
                images=refs,
                turns=[
                    Turn(role="user", text=head + question),
                    Turn(
                        role="assistant",
                        text=answer,
                        masks=[Mask(seg_index=0, rle=encode_mask(mask), image_index=1)],
                    ),
                ],
                meta=dict(meta),
            )


def _hectares(
    mask: np.ndarray, pair: ChangePair, transform: Affine | None, valid: np.ndarray
) -> float | None:
    """Ground area of ``mask`` in ha: measured on the grid (geodesic on a geographic CRS, as the
    chat measures its masks), else from the pair's pixel size; None when neither is known."""
    area = mask_area(mask, transform=transform, crs=pair.before.crs, valid=valid)
    if area.m2 is not None:
        return area.m2 / 1e4
    if pair.gsd_m is not None:
        return float((mask & valid).sum()) * pair.gsd_m**2 / 1e4
    return None
