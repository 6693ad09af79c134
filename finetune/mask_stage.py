"""`python -m finetune.mask_stage`: more mask-head training on cached `[SEG]` states (cheap).

In stage 2 the mask head learns from the few records with a `[SEG]` (a quarter of the mix), one
LLM forward and backward each, and on a CPU that budget ends before the head has converged. Here
the LLM (with its trained LoRA) and the tower are frozen, so each segmentation record needs only
one forward pass, done once: the `[SEG]` hidden state, the tower's patch tokens and the target
mask are cached, and the mask head alone is trained on them for many steps, with the same
flips / 90° rotations applied to the patch grid and the mask. The result is written as a model
folder with everything else unchanged (the LoRA adapter included).

    python -m finetune.mask_stage --model runs/skyeye-tiny/stage2/model \
        --data runs/skyeye-tiny/data/train.jsonl --out runs/skyeye-tiny/mask/model
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)


@torch.no_grad()
def cache_seg_states(model, dataset, *, bf16: bool = True) -> dict[str, torch.Tensor]:
    """Per `[SEG]` of every record: hidden (K, D_text), vision tokens (K, N, D_vis), mask (K, S, S)."""
    hidden, vision, masks = [], [], []
    for index in tqdm(range(len(dataset)), desc="caching [SEG] states", unit="record"):
        example = dataset[index]
        if example is None or not example["masks"]:
            continue
        ids = example["input_ids"][None]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            embeds, vis, _ = model.embed_inputs(
                ids, example["pixel_values"], example["wavelengths"]
            )
            out = model.language_model(
                inputs_embeds=embeds,
                attention_mask=example["attention_mask"][None],
                output_hidden_states=True,
            )
        last = out.hidden_states[-1][0]
        positions = (ids[0] == model.config.seg_token_id).nonzero()[:, 0]
        for k, pos in enumerate(positions.tolist()):
            hidden.append(last[pos].float())
            vision.append(vis[example["mask_image_index"][k]].float())
            masks.append(example["masks"][k].float())
    if not hidden:
        raise ValueError(
            "no record with a [SEG] mask in the data: nothing to train the mask head on"
        )
    return {
        "hidden": torch.stack(hidden),
        "vision": torch.stack(vision),
        "masks": torch.stack(masks),
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
) -> list[dict]:
    """Train `model.mask_head` in place on the cached states; returns the log."""
    from skyeye.modeling.mask_head import mask_losses

    rng = random.Random(seed)
    torch.manual_seed(seed)
    head = model.mask_head.float().train().requires_grad_(True)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
        ),
    )
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    size = cache["masks"].shape[-1]
    n = cache["hidden"].shape[0]
    log, start = [], time.time()
    for step in tqdm(range(steps), desc="mask head", unit="step"):
        idx = [rng.randrange(n) for _ in range(batch_size)]
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m finetune.mask_stage", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model", required=True, help="model folder (stage-2 output, adapter included)")
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="training JSONL (records with [SEG] masks are used)",
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
    args = p.parse_args(argv)
    wanted = {c.strip() for c in args.classes.split(",") if c.strip()}
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("skyeye.io").setLevel(logging.WARNING)
    from skyeye.chat.session import DEFAULT_SYSTEM_PROMPT
    from skyeye.data.dataset import InstructionDataset
    from skyeye.modeling.model import SkyEyeForConditionalGeneration
    from skyeye.processing.processor import SkyEyeProcessor

    if not args.data.is_file():
        print(f"error: {args.data} does not exist", file=sys.stderr)
        return 2
    model = SkyEyeForConditionalGeneration.from_pretrained(args.model)
    if model.mask_head is None:
        print(
            f"error: {args.model} has no mask head (config.use_mask_head is False)", file=sys.stderr
        )
        return 2
    processor = SkyEyeProcessor.from_pretrained(args.model)
    model.requires_grad_(False)
    # Only records whose answer has a [SEG] are worth a forward pass.
    seg_only = args.out.parent / "seg_records.jsonl"
    seg_only.parent.mkdir(parents=True, exist_ok=True)

    def keep(line: str) -> bool:
        if "[SEG]" not in line:
            return False
        return not wanted or set(json.loads(line)["meta"].get("classes") or []) <= wanted

    with open(args.data, encoding="utf-8") as src, open(seg_only, "w", encoding="utf-8") as dst:
        dst.writelines(line for line in src if keep(line))
    dataset = InstructionDataset(
        seg_only,
        processor,
        image_root=args.data.parent,
        mask_size=model.config.vision_config.image_size,
        system_prompt=DEFAULT_SYSTEM_PROMPT,
    )
    cache = cache_seg_states(model, dataset)
    logger.info("%d [SEG] states cached from %d records", cache["hidden"].shape[0], len(dataset))
    log = train_mask_head(
        model, cache, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed
    )
    dtype = torch.bfloat16 if args.save_dtype == "bfloat16" else None
    model.save_pretrained(args.out, processor=processor, dtype=dtype)
    (args.out.parent / "mask_stage_log.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "masks": int(cache["hidden"].shape[0]),
                "log": log,
            },
            indent=1,
        )
    )
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
