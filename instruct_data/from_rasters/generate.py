"""The generator: scenes -> tiles (GeoTIFFs) -> conversations in the unified format (JSONL)."""

from __future__ import annotations

import contextlib
import json
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from affine import Affine
from tqdm import tqdm

from instruct_data.from_rasters.labels import LabelLayer, build_layers
from instruct_data.from_rasters.sources import is_sar, load_image, modality_of, sensor_label
from instruct_data.from_rasters.spec import Options, SceneSpec
from instruct_data.from_rasters.summary import Summary
from instruct_data.from_rasters.tasks import TileQuestions, TileView
from instruct_data.from_rasters.tiling import (
    allowed_ops,
    augment,
    is_north_up,
    select_bands,
    tile_windows,
    write_tile,
)
from instruct_data.from_rasters.zoom import zoom_out
from instruct_data.schema import ImageRef, dumps_record, validate_record
from skyeye.atomic import atomic_open, write_text

logger = logging.getLogger(__name__)


def stable_rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator depending only on the seed and the keys (not on processing order)."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def split_of(scene: SceneSpec, opts: Options) -> str:
    """train/val for a whole scene group: forced, listed in val_scenes, or a seeded hash."""
    if scene.split:
        return scene.split
    if scene.group in opts.val_scenes or scene.id in opts.val_scenes:
        return "val"
    if opts.val_fraction > 0:
        u = zlib.crc32(f"{opts.seed}:{scene.group}".encode()) / 2**32
        return "val" if u < opts.val_fraction else "train"
    return "train"


class RasterInstructionGenerator:
    """Turn labelled scenes into tiles and conversations.

    root: folder the spec's relative paths resolve against. out_dir: receives ``images/``,
    ``conversations.jsonl`` (+ ``train.jsonl`` / ``val.jsonl``) and ``summary.json``; image
    paths in the records are relative to it (``validate --root out_dir``).
    """

    def __init__(self, options: Options, root: Path, out_dir: Path) -> None:
        self.opts, self.root, self.out = options, Path(root), Path(out_dir)
        self.summary = Summary()

    def run(self, scenes: list[SceneSpec]) -> Summary:
        """Process every scene and write the outputs; returns the summary."""
        self.out.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:  # each file renamed into place when complete
            files = {
                n: stack.enter_context(atomic_open(self.out / f"{n}.jsonl", "w"))
                for n in ("conversations", "train", "val")
            }
            for scene in tqdm(scenes, desc="scenes", unit="scene"):
                for rec in self.scene_records(scene):
                    d = rec.to_dict()
                    problems = validate_record(d)
                    if problems:  # a generator bug, not bad input: fail loudly
                        raise RuntimeError(f"generated an invalid record {d['id']}: {problems}")
                    line = dumps_record(d) + "\n"
                    files["conversations"].write(line)
                    files[d["meta"]["split"]].write(line)
                    self.summary.add(d)
        write_text(self.out / "summary.json", json.dumps(self.summary.as_dict(), indent=2) + "\n")
        return self.summary

    # ------------------------------------------------------------------------------------------
    def scene_records(self, scene: SceneSpec) -> Iterator:
        img = load_image(scene.image, self.root)
        layers = build_layers(scene, img, self.root)
        for factor in scene.scales or self.opts.scales:
            zimg, zlayers = zoom_out(img, layers, factor)
            yield from self._scale_records(scene, zimg, zlayers, factor)

    def _scale_records(
        self, scene: SceneSpec, img, layers: list[LabelLayer], factor: int
    ) -> Iterator:
        """Tiles of one scene at one zoom factor (1: the native grid)."""
        opts, s = self.opts, self.summary
        size = scene.tile_size or opts.tile_size
        stride = scene.stride or opts.stride or size
        min_valid = scene.min_valid if scene.min_valid is not None else opts.min_valid
        min_lab = scene.min_labelled if scene.min_labelled is not None else opts.min_labelled
        h, w = img.data.shape[1:]
        windows = tile_windows(h, w, size, stride)
        if not windows:
            s.tiles_skipped[f"scene smaller than tile ({h}x{w} < {size})"] += 1
            logger.warning(
                "scene %s (zoom %d): %dx%d px is smaller than tile_size %d",
                scene.id,
                factor,
                h,
                w,
                size,
            )
            return
        split = split_of(scene, opts)
        label = sensor_label(img, scene.image)
        subsets = (
            ["all"]
            if is_sar(img)
            else [b for b in opts.band_subsets if select_bands(img.wavelengths, b) is not None]
        )
        if not subsets:
            s.tiles_seen += len(windows)
            s.tiles_skipped[f"no band subset of {opts.band_subsets} fits the bands"] += len(windows)
            logger.warning(
                "scene %s: bands %s fit none of %s", scene.id, img.band_names, opts.band_subsets
            )
            return
        valid_all = np.isfinite(img.data).all(axis=0)
        for r, c in windows:
            s.tiles_seen += 1
            tile_id = (f"z{factor}_" if factor > 1 else "") + f"r{r:05d}c{c:05d}"
            valid = valid_all[r : r + size, c : c + size]
            if valid.mean() < min_valid:
                s.tiles_skipped["too little valid data"] += 1
                continue
            kept: list[LabelLayer] = []
            for la in layers:
                lab = (la.class_map[r : r + size, c : c + size] > 0) & valid
                if lab.sum() / max(int(valid.sum()), 1) < min_lab:
                    s.layers_skipped[f"{la.name}: too few labelled pixels"] += 1
                else:
                    kept.append(la)
            if not kept:
                s.tiles_skipped["too few labelled pixels"] += 1
                continue
            n = 0
            for rec in self._tile_records(
                scene, img, kept, r, c, size, tile_id, split, subsets, label, factor
            ):
                n += 1
                yield rec
            if n:
                s.tiles_kept += 1
            else:
                s.tiles_skipped["no question applies"] += 1

    def _tile_records(
        self, scene, img, layers, r, c, size, tile_id, split, subsets_avail, label, factor
    ):
        """Conversations of every variant (augmentation x band subset) of one tile."""
        opts = self.opts
        rng = stable_rng(opts.seed, scene.id, tile_id)
        ops = allowed_ops(opts.flips, opts.rot90)
        variants: list[str | None] = [None]
        if ops:
            k = min(opts.aug_copies, len(ops))
            variants += [str(o) for o in rng.choice(ops, k, replace=False)]
        data = img.data[:, r : r + size, c : c + size]
        transform = img.transform @ Affine.translation(c, r) if img.transform is not None else None
        for op in variants:
            if opts.band_subset_mode == "each":
                subsets = subsets_avail
            else:
                subsets = [subsets_avail[int(rng.integers(len(subsets_avail)))]]
            for subset in subsets:
                idx = select_bands(img.wavelengths, subset)
                assert idx is not None
                vid = tile_id + (f"_{op}" if op else "") + (f"_{subset}" if subset != "all" else "")
                arr, t = augment(data[idx], op, transform)
                valid = np.isfinite(arr).all(axis=0)
                rel = Path("images") / scene.id / f"{vid}.tif"
                names = [img.band_names[i] for i in idx]
                wls = [img.wavelengths[i] for i in idx] if img.wavelengths else None
                modality = modality_of(img)
                if subset != "all":
                    modality = "optical" if len(idx) <= 3 else "multispectral"
                ref = ImageRef(
                    path=rel.as_posix(),
                    modality=modality,
                    band_names=names,
                    wavelengths=wls,
                    size=[int(arr.shape[1]), int(arr.shape[2])],
                )
                compass = is_north_up(t) if t is not None else bool(scene.image.north_up)
                meta = {
                    "generator": "from_rasters",
                    "scene_id": scene.id,
                    "scene_group": scene.group,
                    "split": split,
                    # row/col/size on the zoomed grid; zoom: source pixels per tile pixel
                    "tile": {"row": r, "col": c, "size": size, "zoom": factor},
                    "augment": op,
                    "band_subset": subset,
                    "north_up": compass,
                    "source_image": str(img.path),
                }
                convs = []
                for la in layers:
                    cmap, _ = augment(la.class_map[r : r + size, c : c + size], op)
                    view = TileView(
                        image=ref,
                        cmap=cmap,
                        valid=valid,
                        img_phrase=f"this {label} image",
                        compass=compass,
                        record_id=f"{scene.source}:{scene.id}:{vid}",
                        source=scene.source,
                        meta=meta,
                    )
                    rng_q = stable_rng(opts.seed, scene.id, vid, la.name)
                    q = TileQuestions(
                        view, la, rng_q, opts.min_present, opts.min_region, opts.ground_answers
                    )
                    convs += q.build(
                        opts.tasks,
                        opts.presence_pairs,
                        tuple(opts.presence_focus),
                        opts.presence_focus_yes_rate,
                    )
                if convs:  # write only tiles that some conversation uses
                    write_tile(self.out / rel, arr, names, img.crs, t)
                    self.summary.images_written += 1
                    yield from convs
