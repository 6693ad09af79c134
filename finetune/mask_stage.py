"""`python -m finetune.mask_stage`: more mask-head training on cached `[SEG]` states (cheap).

In stage 2 the mask head learns from the few records with a `[SEG]` (a quarter of the mix), one
LLM forward and backward each, and on a CPU that budget ends before the head has converged. Here
the LLM (with its trained LoRA) and the tower are frozen, so each segmentation record needs only
one forward pass, done once: the `[SEG]` hidden state, the tower's patch tokens and the target
mask are cached, and the mask head alone is trained on them for many steps, with the same
flips / 90° rotations applied to the patch grid and the mask. The result is written as a model
folder with everything else unchanged (the LoRA adapter included).

With ``--decoder hires`` the light head is replaced by the "hires" decoder (initialised from the
light head's weights, so it starts from the same masks) and trained on full-resolution targets:
each record's image pixels on the grid it was read at (up to ``--hires-size``) and its mask on
that grid, never down-sampled to the model's input size.

    python -m finetune.mask_stage --model runs/skyeye-tiny/stage2/model \
        --data runs/skyeye-tiny/data/train.jsonl --out runs/skyeye-tiny/mask/model
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from finetune.schedule import make_scheduler
from finetune.seg_states import record_seg_states, seg_classes
from skyeye.atomic import write_text
from skyeye.constants import SEG_TOKEN

logger = logging.getLogger(__name__)


@torch.no_grad()
def cache_seg_states(model, dataset, *, bf16: bool = True) -> dict[str, Any]:
    """Per `[SEG]` of every record: hidden (K, D_text), vision tokens (K, N, D_vis), mask (K, S, S).

    For a decoder that refines on pixels, "masks" is a list of (H_k, W_k) on each image's hires
    grid, with "pixels" (C_k, H_k, W_k) and "wavelengths" (C_k,) lists beside it.
    """
    hires = getattr(model.mask_head, "needs_pixels", False)
    hidden, vision, masks, pixels, waves, records = [], [], [], [], [], []
    for index in tqdm(range(len(dataset)), desc="caching [SEG] states", unit="record"):
        example = dataset[index]
        if example is None or not example["masks"]:
            continue
        last, vis, positions = record_seg_states(model, example, bf16=bf16)
        for k, pos in enumerate(positions):
            image = example["mask_image_index"][k]
            hidden.append(last[pos].float())
            records.append(index)
            vision.append(vis[image].float())
            masks.append(example["masks"][k].float())
            if hires:
                pixels.append(example["pixel_values_hires"][image].float())
                waves.append(example["wavelengths"][image].float())
    if not hidden:
        raise ValueError(
            "no record with a [SEG] mask in the data: nothing to train the mask head on"
        )
    if hires:
        return {
            "hidden": torch.stack(hidden),
            "vision": torch.stack(vision),
            "masks": masks,
            "pixels": pixels,
            "wavelengths": waves,
            "records": records,
        }
    return {
        "hidden": torch.stack(hidden),
        "vision": torch.stack(vision),
        "masks": torch.stack(masks),
        "records": records,
    }


def _augment(
    vision: torch.Tensor, masks: torch.Tensor, side: int, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same random flip / rot90 of the (B, side*side, D) patch grid and the (B, S, S) masks."""
    b, n, d = vision.shape
    grid = vision.reshape(b, side, side, d)
    k = rng.randrange(4)
    grid, masks = torch.rot90(grid, k, (1, 2)), torch.rot90(masks, k, (1, 2))
    if rng.random() < 0.5:
        grid, masks = grid.flip(2), masks.flip(2)
    return grid.reshape(b, n, d), masks


def _augment_hires(
    vision: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor, side: int, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same random flip / rot90 of one (side*side, D) patch grid, (C, H, W) pixels and (H, W) mask."""
    n, d = vision.shape
    grid = vision.reshape(side, side, d)
    k = rng.randrange(4)
    grid, pixels, mask = (
        torch.rot90(grid, k, (0, 1)),
        torch.rot90(pixels, k, (1, 2)),
        torch.rot90(mask, k, (0, 1)),
    )
    if rng.random() < 0.5:
        grid, pixels, mask = grid.flip(1), pixels.flip(2), mask.flip(1)
    return grid.reshape(n, d), pixels, mask


def _hires_losses(head, cache: dict[str, Any], idx: list[int], side: int, rng: random.Random):
    """Mask losses of a batch of hires records; masks of one grid size are decoded together."""
    from skyeye.modeling.mask_decoders import mask_losses

    views = [
        _augment_hires(cache["vision"][i], cache["pixels"][i], cache["masks"][i], side, rng)
        for i in idx
    ]
    groups: dict[tuple[int, int], list[int]] = {}
    for j, (_, _, mask) in enumerate(views):
        groups.setdefault(tuple(mask.shape), []).append(j)
    terms = {"bce": 0.0, "dice": 0.0}
    for size, members in groups.items():
        logits = head(
            cache["hidden"][[idx[j] for j in members]],
            torch.stack([views[j][0] for j in members]),
            (side, side),
            size,
            [views[j][1] for j in members],
            [cache["wavelengths"][idx[j]] for j in members],
        )
        part = mask_losses(logits, torch.stack([views[j][2] for j in members]))
        for key in terms:
            terms[key] = terms[key] + part[key] * len(members) / len(idx)
    return terms


def draw_batch(
    rng: random.Random, n: int, batch_size: int, weights: list[float] | None = None
) -> list[int]:
    """`batch_size` indices into the n cached masks, with replacement, each in proportion to its
    weight (None: uniformly, drawn as the stage always did, so unweighted runs stay bit-identical)."""
    if weights is None:
        return [rng.randrange(n) for _ in range(batch_size)]
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weights for {n} cached masks")
    return rng.choices(range(n), weights=weights, k=batch_size)


def train_mask_head(
    model,
    cache: dict[str, torch.Tensor],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    bce_weight: float = 2.0,
    dice_weight: float = 0.5,
    weights: list[float] | None = None,
) -> list[dict]:
    """Train `model.mask_head` in place on the cached states; returns the log.

    weights: per cached mask, how often it is drawn relative to the others (None: uniformly).
    """
    from skyeye.modeling.mask_decoders import mask_losses

    rng = random.Random(seed)
    torch.manual_seed(seed)
    head = model.mask_head.float().train().requires_grad_(True)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    sched = make_scheduler(opt, "cosine", warmup, steps)
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    hires = getattr(head, "needs_pixels", False)
    size = None if hires else cache["masks"].shape[-1]
    n = cache["hidden"].shape[0]
    log, start = [], time.time()
    for step in tqdm(range(steps), desc="mask head", unit="step"):
        idx = draw_batch(rng, n, batch_size, weights)
        if hires:
            terms = _hires_losses(head, cache, idx, side, rng)
        else:
            vision, masks = _augment(cache["vision"][idx], cache["masks"][idx], side, rng)
            logits = head(cache["hidden"][idx], vision, (side, side), (size, size))
            terms = mask_losses(logits, masks)
        loss = bce_weight * terms["bce"] + dice_weight * terms["dice"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == steps - 1:
            log.append(
                {
                    "step": step,
                    "bce": terms["bce"].item(),
                    "dice": terms["dice"].item(),
                    "seconds": round(time.time() - start, 1),
                }
            )
            logger.info("mask step %d: %s", step, log[-1])
    head.eval().requires_grad_(False)
    return log


def to_hires(model, processor, hires_size: int, ratios: int = 0, indices: bool = False) -> None:
    """Replace the model's light mask head by a "hires" one that starts from its weights
    (with ``ratios`` band-ratio features, see ``WavelengthNormDiff``, and with ``indices`` the
    spectral-index features, see ``SpectralIndexFeatures``)."""
    from skyeye.modeling.mask_decoders import get_mask_decoder

    if hires_size < 1:
        raise ValueError(f"--hires-size must be positive, got {hires_size}")
    if ratios < 0:
        raise ValueError(f"--hires-ratios must be 0 (none) or positive, got {ratios}")
    light = model.mask_head
    model.config.mask_decoder = "hires"
    model.config.mask_hires_ratios = ratios
    model.config.mask_hires_indices = indices
    head = get_mask_decoder("hires")(model.config).to(next(light.parameters()).dtype)
    missing, unexpected = head.load_state_dict(light.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"the light head has weights the hires head lacks: {unexpected}")
    logger.info(
        "hires decoder from the light head; new: %s", sorted({k.split(".")[0] for k in missing})
    )
    model.mask_head = head
    processor.image_processor.hires_size = hires_size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m finetune.mask_stage", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model", required=True, help="model folder (stage-2 output, adapter included)")
    p.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="training JSONL file(s), all in one folder, their image paths relative to it "
        "(records with [SEG] masks are used)",
    )
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument(
        "--classes",
        default="",
        help="comma-separated: train only on [SEG] records about these classes (default: all). "
        "One head serves every class, so masks of the others follow what it learns here",
    )
    p.add_argument(
        "--decoder",
        choices=["keep", "hires"],
        default="keep",
        help="keep the model's mask decoder, or replace a light one by the 'hires' decoder "
        "(initialised from it) trained on full-resolution masks",
    )
    p.add_argument(
        "--max-records",
        type=int,
        default=0,
        help="cache at most this many [SEG] records of each --data file (a seeded sample per "
        "file; 0 = all): each costs one LLM forward. Per file, so records added in a second file "
        "(objects, aircraft) join the first file's sample instead of displacing part of it",
    )
    p.add_argument(
        "--hires-size",
        type=int,
        default=256,
        help="with --decoder hires: longest side of the full-resolution pixels and targets",
    )
    p.add_argument(
        "--hires-ratios",
        type=int,
        default=0,
        help="with --decoder hires: band-ratio features of the full-resolution path (normalised "
        "differences of wavelength-picked band mixes, like NDWI); 0 = none",
    )
    p.add_argument(
        "--hires-indices",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --decoder hires: give the full-resolution path NDWI, MNDWI, NDVI, NDBI, their "
        "soft signs and the visible brightness, bands picked by role as the label rules pick them",
    )
    p.add_argument(
        "--class-raster-weight",
        type=float,
        default=1.0,
        help="how often a mask from a class raster (label_type class_raster: the UKIS masks drawn "
        "by people, the Slovenia land-cover map) is drawn relative to an index-rule mask; 1 = "
        "uniformly",
    )
    args = p.parse_args(argv)
    if args.hires_ratios < 0:
        print(
            f"error: --hires-ratios must be 0 (none) or positive, got {args.hires_ratios}",
            file=sys.stderr,
        )
        return 2
    if args.class_raster_weight <= 0:
        print(
            f"error: --class-raster-weight must be positive, got {args.class_raster_weight}",
            file=sys.stderr,
        )
        return 2
    wanted = {c.strip() for c in args.classes.split(",") if c.strip()}
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("skyeye.io").setLevel(logging.WARNING)
    from skyeye.chat.session import DEFAULT_SYSTEM_PROMPT
    from skyeye.data.dataset import InstructionDataset
    from skyeye.modeling.model import SkyEyeForConditionalGeneration
    from skyeye.processing.processor import SkyEyeProcessor

    for path in args.data:
        if not path.is_file():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    root = args.data[0].parent
    if any(path.parent.resolve() != root.resolve() for path in args.data):
        print(
            "error: --data files must share one folder (their image paths are relative to it); "
            f"got {', '.join(str(p.parent) for p in args.data)}",
            file=sys.stderr,
        )
        return 2
    model = SkyEyeForConditionalGeneration.from_pretrained(args.model)
    if model.mask_head is None:
        print(
            f"error: {args.model} has no mask head (config.use_mask_head is False)", file=sys.stderr
        )
        return 2
    processor = SkyEyeProcessor.from_pretrained(args.model)
    if args.decoder == "hires" and not getattr(model.mask_head, "needs_pixels", False):
        # The new layers come from torch's global generator, whose state after from_pretrained
        # differs between two processes of the same command (its random draws follow an order
        # that varies per process): seeded here, two runs give the same weights byte for byte.
        torch.manual_seed(args.seed)
        to_hires(model, processor, args.hires_size, args.hires_ratios, args.hires_indices)
    model.requires_grad_(False)
    # Only records whose answer has a [SEG] are worth a forward pass.
    seg_only = args.out.parent / "seg_records.jsonl"
    seg_only.parent.mkdir(parents=True, exist_ok=True)

    def keep(line: str) -> bool:
        if SEG_TOKEN not in line:
            return False
        return not wanted or set(json.loads(line)["meta"].get("classes") or []) <= wanted

    lines, trained_lines = [], []
    for path in args.data:
        with open(path, encoding="utf-8") as src:
            kept = [line for line in src if keep(line)]
        trained_lines += kept
        if 0 < args.max_records < len(kept):
            picked = sorted(random.Random(args.seed).sample(range(len(kept)), args.max_records))
            kept = [kept[i] for i in picked]
        lines += kept
    # What the chat may count and measure with this decoder: every class phrase a [SEG] of these
    # records names (the head is one for all classes; stage 2 trained it on these same records).
    trained = seg_classes(trained_lines)
    with open(seg_only, "w", encoding="utf-8") as dst:
        dst.writelines(lines)
    dataset = InstructionDataset(
        seg_only,
        processor,
        image_root=root,
        mask_size=model.config.vision_config.image_size,
        system_prompt=DEFAULT_SYSTEM_PROMPT,
    )
    cache = cache_seg_states(model, dataset)
    logger.info("%d [SEG] states cached from %d records", cache["hidden"].shape[0], len(dataset))
    weights, n_class_raster = None, None
    if args.class_raster_weight != 1.0:
        # The dataset's own record lookup, so each cached mask is matched to its record's meta.
        from_raster = {
            r: dataset.raw_record(r)[1]["meta"].get("label_type") == "class_raster"
            for r in set(cache["records"])
        }
        weights = [args.class_raster_weight if from_raster[r] else 1.0 for r in cache["records"]]
        n_class_raster = sum(from_raster[r] for r in cache["records"])
        logger.info(
            "%d of %d masks from class rasters, drawn %gx as often",
            n_class_raster,
            len(weights),
            args.class_raster_weight,
        )
    log = train_mask_head(
        model,
        cache,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        weights=weights,
    )
    model.config.mask_classes = trained
    dtype = torch.bfloat16 if args.save_dtype == "bfloat16" else None
    model.save_pretrained(args.out, processor=processor, dtype=dtype)
    write_text(
        args.out.parent / "mask_stage_log.json",
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "masks": int(cache["hidden"].shape[0]),
                "class_raster_masks": n_class_raster,
                "log": log,
            },
            indent=1,
        ),
    )
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
