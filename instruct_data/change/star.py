"""STAR-style change pairs from single-date labelled rasters (Zheng et al., "Change is Everywhere",
ICCV 2021): change = where two labelled images' class masks differ.

From every scene of a from-rasters spec (the same rasters and label rules skyeye-tiny learns
from; SAR scenes labelled through another image are left out), three kinds of pairs:

* ``crop``: two tiles of one scene taken as "before" and "after" (different places: STAR's
  insight is that the semantic difference is a valid change label all the same);
* ``paste``: a tile with the pixels of one class pasted in from another tile (copy-paste: the
  class *appeared* exactly where pasted over another class);
* ``dates``: the same tile on two dates of one scene group (eo-learn Slovenia's dates share one
  timeless land-cover map: real seasonal differences that are *not* change).

Per-class transitions (``water appeared``, ``forest disappeared``) come with each pair. Tiles are
cut at each scene's own tile size and, with ``scene_size``, at the whole-scene window's size too
where a scene has room (the decoder then learns change at the scale `skyeye.scene` reads). A
paste pair's label is known wherever the two tiles are the same pixels, labelled or not: no
change there.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from affine import Affine

from instruct_data.change.licences import get_licence
from instruct_data.change.pairs import ChangePair, Transition
from instruct_data.from_rasters.generate import stable_rng
from instruct_data.from_rasters.labels import LabelLayer, build_layers
from instruct_data.from_rasters.sources import is_sar, load_image
from instruct_data.from_rasters.spec import SceneSpec, load_spec
from instruct_data.from_rasters.tiling import tile_windows
from skyeye.errors import MissingBandError, RasterReadError, SkipRecord, SpecError
from skyeye.io.image import RasterImage

logger = logging.getLogger(__name__)

SOURCE = "star-pairs"
#: A pasted class covers at most this share of the tile: a flood or a clear-cut can fill a
#: window, and a decoder that saw pastes of at most half a tile drew less of a change the more of
#: the window it filled (recall 0.43 at half a 512-px window, 0 at 95 %; docs/skyeye_tiny.md).
MAX_PASTE_SHARE = 0.9


def _crop(img: RasterImage, r: int, c: int, size: int) -> RasterImage:
    transform = img.transform @ Affine.translation(c, r) if img.transform is not None else None
    return dataclasses.replace(
        img, data=img.data[:, r : r + size, c : c + size].copy(), transform=transform
    )


def _transitions(before: np.ndarray, after: np.ndarray, ok: np.ndarray, layer: LabelLayer):
    """Per askable class: appeared / disappeared masks where both tiles are labelled."""
    out = []
    for k, (name, askable) in enumerate(zip(layer.classes, layer.askable, strict=True), 1):
        if not askable:
            continue
        gained = (after == k) & (before != k) & ok
        lost = (before == k) & (after != k) & ok
        if gained.any():
            out.append(Transition(name, "appeared", gained, f"new {name}", f"{name} appeared"))
        if lost.any():
            out.append(Transition(name, "disappeared", lost, f"lost {name}", f"{name} was lost"))
    return out


class StarPairs:
    """Pairs from the scenes of a from-rasters spec (``spec_path``, paths under ``root``)."""

    def __init__(
        self,
        spec_path: Path,
        root: Path | None,
        val: list[str],
        seed: int = 0,
        scene_size: int | None = None,
    ) -> None:
        """scene_size: also cut ``crop`` / ``paste`` pairs of this size from every scene that
        has room for two (the whole-scene pipeline's window: change at the scale it is used at)."""
        spec_root, self.opts, self.scenes = load_spec(spec_path)
        self.root = Path(root) if root is not None else spec_root
        self.val, self.seed, self.scene_size = set(val), seed, scene_size

    def pairs(self) -> Iterator[ChangePair | SkipRecord]:
        """Every pair of every usable scene; a scene that cannot be read is one SkipRecord."""
        groups: dict[str, list[tuple[SceneSpec, RasterImage, LabelLayer]]] = defaultdict(list)
        for scene in self.scenes:
            if scene.label_image is not None:
                continue  # labels from another image (SAR): its own pixels do not show them
            try:
                img = load_image(scene.image, self.root)
                layers = build_layers(scene, img, self.root)
            except (SpecError, RasterReadError, MissingBandError, OSError) as err:
                yield SkipRecord("unreadable scene", f"{scene.id}: {err}")
                continue
            if is_sar(img) or not layers:
                continue
            groups[scene.group].append((scene, img, layers[0]))
            yield from self._scene_pairs(
                scene, img, layers[0], scene.tile_size or self.opts.tile_size
            )
            if self.scene_size and min(img.data.shape[1:]) >= self.scene_size:
                yield from self._scene_pairs(
                    scene, img, layers[0], self.scene_size, f"s{self.scene_size}"
                )
        for members in groups.values():
            yield from self._date_pairs(members)

    def _split(self, scene: SceneSpec) -> str:
        return "val" if scene.group in self.val or scene.id in self.val else "train"

    def _pair(
        self, scene, pair_id, before, after, b_map, a_map, layer, kind, pasted=None
    ) -> ChangePair:
        """pasted: (H, W) bool, the pixels a ``paste`` pair changed: everywhere else the two
        images are the same pixels, so "no change" is known there whether labelled or not."""
        labelled = (b_map > 0) & (a_map > 0)
        if pasted is not None:
            # a pasted pixel's after class is the pasted one; its before class must be known
            labelled = ~pasted | (b_map > 0)
        ok = labelled & before.valid_mask & after.valid_mask
        after = dataclasses.replace(after, crs=before.crs, transform=before.transform)
        return ChangePair(
            source=SOURCE,
            pair_id=pair_id,
            before=before,
            after=after,
            change=(b_map != a_map) & ok,
            valid=ok,
            dates=(before.datetime, after.datetime) if kind == "dates" else (None, None),
            kinds="the land cover differs",
            licence=get_licence(SOURCE),
            label_source=f"{layer.description} (STAR pair: {kind})",
            split=self._split(scene),
            transitions=_transitions(b_map, a_map, ok, layer),
            how_much="land cover changed",
            extra_meta={"scene_source": scene.source, "scene_id": scene.id, "star_kind": kind},
        )

    def _scene_pairs(self, scene, img, layer, size: int, tag: str = "") -> Iterator[ChangePair]:
        windows = tile_windows(*img.data.shape[1:], size, size)
        if len(windows) < 2:
            return
        rng = stable_rng(self.seed, SOURCE, scene.id, *([tag] if tag else []))
        for i, (r, c) in enumerate(windows):
            j = (i + 1 + int(rng.integers(len(windows) - 1))) % len(windows)
            r2, c2 = windows[j]
            before, other = _crop(img, r, c, size), _crop(img, r2, c2, size)
            b_map = layer.class_map[r : r + size, c : c + size]
            o_map = layer.class_map[r2 : r2 + size, c2 : c2 + size]
            tid = f"{scene.id}/{tag}r{r}c{c}"
            yield self._pair(scene, f"{tid}-crop", before, other, b_map, o_map, layer, "crop")
            present = [
                k
                for k in np.unique(o_map)
                if k > 0 and layer.askable[k - 1] and (o_map == k).mean() <= MAX_PASTE_SHARE
            ]
            if not present:
                continue
            k = int(present[int(rng.integers(len(present)))])
            paste = (o_map == k) & other.valid_mask
            after = dataclasses.replace(before, data=np.where(paste, other.data, before.data))
            a_map = np.where(paste, o_map, b_map)
            yield self._pair(
                scene, f"{tid}-paste", before, after, b_map, a_map, layer, "paste", paste
            )

    def _date_pairs(self, members) -> Iterator[ChangePair]:
        """Consecutive dates of one scene group, the same tiles (the whole grid when small)."""
        for (scene, img, layer), (_, later, later_layer) in zip(members, members[1:], strict=False):
            if img.data.shape[1:] != later.data.shape[1:]:
                continue
            size = scene.tile_size or self.opts.tile_size
            for r, c in tile_windows(*img.data.shape[1:], size, size):
                sl = (slice(r, r + size), slice(c, c + size))
                yield self._pair(
                    scene,
                    f"{scene.id}/r{r}c{c}-dates",
                    _crop(img, r, c, size),
                    _crop(later, r, c, size),
                    layer.class_map[sl],
                    later_layer.class_map[sl],
                    layer,
                    "dates",
                )
