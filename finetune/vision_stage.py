"""`python -m finetune.vision_stage`: a cheap dense land-cover objective on the vision tower alone.

Before the LLM ever sees an image, the DOFA tower is taught to say, for every patch of its grid,
which classes cover it. Targets come from the unified conversations written by
`instruct_data.from_rasters` (nothing else is needed):

- `segmentation` records carry a full-resolution class mask (COCO RLE) of one class on a tile:
  its per-patch share is a dense target (BCE on each patch);
- every record's `meta.proportions` holds the share of *each* class of its label layer on that
  tile: the mean patch probability of a class is pulled to its share (BCE on the mean).

A linear head (D_vision -> n_classes) on the patch tokens is trained with the tower and then
dropped; the tower's weights go back into a copy of the starting model folder (same layout as
`SkyEyeForConditionalGeneration.save_pretrained`), so stage 1 starts from it with `model: OUT`.

    python -m finetune.vision_stage --data runs/skyeye-tiny/data/train.jsonl \
        --model skyeye-tiny --out runs/skyeye-tiny/vision --steps 300
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from finetune.schedule import make_scheduler
from skyeye.atomic import write_text
from skyeye.constants import PHRASE_CLOSE, PHRASE_OPEN, SEG_TOKEN
from skyeye.io.rle import decode_rle

logger = logging.getLogger(__name__)

_PHRASE = re.compile(
    re.escape(PHRASE_OPEN) + r"(.*?)" + re.escape(PHRASE_CLOSE) + r"\s*" + re.escape(SEG_TOKEN)
)


@dataclass
class TileTargets:
    """What the records say about one tile image.

    masks: class -> (S, S) float mask share per pixel at the model input size.
    shares: class -> share of the tile (0..1).
    """

    image: dict
    masks: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    shares: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def collect_targets(jsonl: Path) -> dict[str, TileTargets]:
    """Group the records of `jsonl` by their first image's path into per-tile targets."""
    tiles: dict[str, TileTargets] = {}
    with open(jsonl, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            if len(rec.get("images", [])) != 1:
                continue
            image = rec["images"][0]
            key = json.dumps(image["path"])
            tile = tiles.setdefault(key, TileTargets(image=image))
            for name, share in (rec.get("meta", {}).get("proportions") or {}).items():
                tile.shares[name].append(float(share))
            for turn in rec["turns"]:
                phrases = (
                    _PHRASE.findall(turn.get("text", "")) if turn["role"] == "assistant" else []
                )
                for m in sorted(turn.get("masks") or [], key=lambda m: int(m["seg_index"])):
                    k = int(m["seg_index"])
                    if k < len(phrases) and int(m.get("image_index", 0)) == 0:
                        tile.masks[phrases[k].strip()].append(
                            decode_rle(m["rle"]).astype(np.float32)
                        )
    return tiles


@dataclass
class VisionStageConfig:
    """Settings of the vision stage."""

    steps: int = 300
    batch_size: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 20
    dense_weight: float = 1.0
    share_weight: float = 1.0
    band_dropout: float = 0.5
    seed: int = 0
    log_every: int = 10
    bf16: bool = True  # bf16 autocast: about 3x faster than float32 on CPUs with AVX512-BF16 / AMX


class TileBank:
    """Preprocessed tiles (model input) and their targets, grouped by band set for batching."""

    def __init__(
        self, tiles: dict[str, TileTargets], root: Path, processor: Any, classes: list[str]
    ) -> None:
        from skyeye.data.record_image import read_record_image

        self.classes = classes
        index = {c: i for i, c in enumerate(classes)}
        size = processor.image_processor.image_size
        self.items: list[dict[str, Any]] = []
        for key, tile in tqdm(sorted(tiles.items()), desc="tiles", unit="tile"):
            try:
                # Read as the training dataset reads it (skyeye.data.record_image).
                raster = read_record_image(
                    tile.image,
                    root,
                    max_size=size,
                    sar_wavelength=processor.image_processor.sar_wavelength,
                )
                batch = processor.image_processor([raster])
            except Exception as err:  # noqa: BLE001 - a bad tile is skipped and named
                logger.warning("skipping %s: %s", key, err)
                continue
            pixels = batch["pixel_values"][0].to(torch.float16)
            dense = torch.full((len(classes), size, size), float("nan"))
            for name, masks in tile.masks.items():
                m = torch.from_numpy(np.mean(masks, axis=0))[None, None]
                dense[index[name]] = F.interpolate(m, size=(size, size), mode="area")[0, 0]
            shares = torch.full((len(classes),), float("nan"))
            for name, values in tile.shares.items():
                shares[index[name]] = float(np.mean(values))
            self.items.append(
                {
                    "pixels": pixels,
                    "waves": batch["wavelengths"][0],
                    "dense": dense,
                    "shares": shares,
                }
            )
        self.groups: dict[tuple[float, ...], list[int]] = defaultdict(list)
        for i, item in enumerate(self.items):
            self.groups[tuple(float(w) for w in item["waves"])].append(i)

    def sample(
        self, rng: random.Random, batch_size: int, band_dropout: float
    ) -> tuple[torch.Tensor, ...]:
        """A batch of one band set: pixels (B, C, S, S), waves (C,), dense (B, K, S, S), shares (B, K)."""
        keys = list(self.groups)
        weights = [len(self.groups[k]) for k in keys]
        key = rng.choices(keys, weights)[0]
        idx = [rng.choice(self.groups[key]) for _ in range(batch_size)]
        pixels = torch.stack([self.items[i]["pixels"].float() for i in idx])
        dense = torch.stack([self.items[i]["dense"] for i in idx])
        shares = torch.stack([self.items[i]["shares"] for i in idx])
        waves = self.items[idx[0]]["waves"]
        # Same flip / 90° rotation for pixels and masks (per batch: cheap, and the tiles already
        # come in augmented variants).
        k = rng.randrange(4)
        if k:
            pixels, dense = torch.rot90(pixels, k, (2, 3)), torch.rot90(dense, k, (2, 3))
        if rng.random() < 0.5:
            pixels, dense = pixels.flip(3), dense.flip(3)
        # Random band subsets so that the tower learns from any subset of the bands it may get.
        n = pixels.shape[1]
        if n > 3 and rng.random() < band_dropout:
            keep = sorted(rng.sample(range(n), rng.randint(3, n - 1)))
            pixels, waves = pixels[:, keep], waves[keep]
        return pixels, waves, dense, shares


def vision_losses(
    logits: torch.Tensor, dense: torch.Tensor, shares: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Losses of per-patch class logits.

    Args:
        logits: (B, K, G, G) per-patch class logits on the G x G patch grid.
        dense: (B, K, S, S) per-pixel class share, NaN where unknown.
        shares: (B, K) tile share of each class, NaN where unknown.
    """
    g = logits.shape[-1]
    known = torch.isfinite(dense)
    target = F.adaptive_avg_pool2d(torch.nan_to_num(dense), g)
    have = F.adaptive_avg_pool2d(known.float(), g) > 0.999
    zero = logits.sum() * 0
    dense_loss = (
        F.binary_cross_entropy_with_logits(logits[have], target[have]) if have.any() else zero
    )
    ok = torch.isfinite(shares)
    mean_prob = torch.sigmoid(logits).mean(dim=(2, 3)).clamp(1e-4, 1 - 1e-4)
    share_loss = F.binary_cross_entropy(mean_prob[ok], shares[ok]) if ok.any() else zero
    return {"dense": dense_loss, "share": share_loss}


def train_vision(model: Any, bank: TileBank, cfg: VisionStageConfig) -> list[dict[str, float]]:
    """Train `model.vision_tower` (+ a temporary linear head) in place; returns the log."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    tower = model.vision_tower
    tower.train().requires_grad_(True)
    head = torch.nn.Linear(tower.hidden_size, len(bank.classes))
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    sched = make_scheduler(opt, "cosine", cfg.warmup_steps, cfg.steps)
    side = tower.config.image_size // tower.config.patch_size
    log: list[dict[str, float]] = []
    layer = model.config.vision_feature_layer
    start = time.time()
    for step in tqdm(range(cfg.steps), desc="vision stage", unit="step"):
        pixels, waves, dense, shares = bank.sample(rng, cfg.batch_size, cfg.band_dropout)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            tokens = tower(pixels, waves, feature_layer=layer)  # (B, G*G, D)
            logits = head(tokens).transpose(1, 2).reshape(len(pixels), -1, side, side)
        terms = vision_losses(logits.float(), dense, shares)
        loss = cfg.dense_weight * terms["dense"] + cfg.share_weight * terms["share"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            row = {
                "step": step,
                "loss": loss.item(),
                "dense": terms["dense"].item(),
                "share": terms["share"].item(),
                "seconds": round(time.time() - start, 1),
            }
            log.append(row)
            logger.info("vision step %d: %s", step, row)
    tower.eval().requires_grad_(False)
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finetune.vision_stage", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="from_rasters train.jsonl")
    parser.add_argument(
        "--image-root",
        type=Path,
        default=None,
        help="image paths are relative to this (default: the JSONL's folder)",
    )
    parser.add_argument(
        "--model", default="skyeye-tiny", help="starting model folder or bundled model"
    )
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument(
        "--sar-wavelength",
        type=float,
        default=None,
        help="SAR placeholder (µm) stored with the processor",
    )
    for f in VisionStageConfig.__dataclass_fields__.values():
        kind = (
            (lambda v: str(v).lower() in ("1", "true", "yes"))
            if isinstance(f.default, bool)
            else type(f.default)
        )
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("skyeye.io").setLevel(logging.WARNING)
    from skyeye.bundled import resolve_model_folder
    from skyeye.modeling.model import SkyEyeForConditionalGeneration
    from skyeye.processing.processor import SkyEyeProcessor

    if not args.data.is_file():
        print(
            f"error: {args.data} does not exist: run python -m instruct_data.from_rasters first",
            file=sys.stderr,
        )
        return 2
    cfg = VisionStageConfig(**{k: getattr(args, k) for k in VisionStageConfig.__dataclass_fields__})
    folder = resolve_model_folder(args.model)
    model = SkyEyeForConditionalGeneration.from_pretrained(folder, load_adapter=False)
    processor = SkyEyeProcessor.from_pretrained(folder)
    if args.sar_wavelength is not None:
        processor.image_processor.sar_wavelength = float(args.sar_wavelength)
    tiles = collect_targets(args.data)
    classes = sorted({c for t in tiles.values() for c in (*t.shares, *t.masks)})
    if not classes:
        print(f"error: {args.data} has no proportions or masks to learn from", file=sys.stderr)
        return 2
    bank = TileBank(tiles, args.image_root or args.data.parent, processor, classes)
    logger.info(
        "%d tiles in %d band sets, %d classes: %s",
        len(bank.items),
        len(bank.groups),
        len(classes),
        classes,
    )
    log = train_vision(model, bank, cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, processor=processor)
    write_text(
        args.out / "vision_stage_log.json",
        json.dumps({"classes": classes, "config": cfg.__dict__, "log": log}, indent=1),
    )
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
