"""Side test: the "hires" decoder trained on cached [SEG] states vs the shipped light head.

    python scripts/hires_mask_side_test.py --data runs/skyeye-tiny/data [--model skyeye-tiny]
        [--steps 300] [--batch-size 16] [--lr 2e-3] [--out report.json]

Not the recipe's validation (which asks every question through the chat): here the LLM (with its
LoRA) and the tower are frozen, the `[SEG]` hidden states of the water segmentation records of
`train.jsonl` and `val.jsonl` (held-out scenes) are computed once, exactly as
`finetune.mask_stage` does, the light head is turned into the hires decoder (`--decoder hires`)
and trained on the training states, and on the held-out ones the light head (as shipped), the
trained hires decoder, NDWI > 0, MNDWI > 0 (where SWIR exists) and VV < -15 dB (SAR) are each
scored against the record's label at full tile resolution, per label type (hand-drawn UKIS
masks, index rules, SAR rule).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

logger = logging.getLogger(__name__)


def water_records(src: Path, dst: Path) -> list[dict]:
    keep = []
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for line in f:
            rec = json.loads(line)
            if rec["meta"].get("gen_task") == "segmentation" and rec["meta"].get("classes") == [
                "water"
            ]:
                out.write(line)
                keep.append(rec)
    return keep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder with train.jsonl, val.jsonl")
    p.add_argument("--model", default="skyeye-tiny")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hires-size", type=int, default=256)
    p.add_argument("--max-val", type=int, default=0, help="0 = every held-out water record")
    p.add_argument("--out", type=Path, default=Path("hires_side_test.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("skyeye.io").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    from finetune.mask_stage import cache_seg_states, to_hires, train_mask_head
    from finetune.validate_skyeye_tiny import read_tile
    from finetune.validation_scenes import mask_iou, mndwi_water, ndwi_water, vv_threshold_water
    from skyeye.atomic import write_text
    from skyeye.chat.session import DEFAULT_SYSTEM_PROMPT
    from skyeye.data.dataset import InstructionDataset
    from skyeye.modeling.model import SkyEyeForConditionalGeneration
    from skyeye.processing.processor import SkyEyeProcessor

    model = SkyEyeForConditionalGeneration.from_pretrained(args.model)
    processor = SkyEyeProcessor.from_pretrained(args.model)
    model.requires_grad_(False)
    light = model.mask_head
    to_hires(model, processor, args.hires_size)
    work = args.out.parent
    caches, recs = {}, {}
    for split in ("train", "val"):
        path = work / f"hires_side_{split}.jsonl"
        recs[split] = water_records(args.data / f"{split}.jsonl", path)
        if split == "val" and args.max_val:
            recs[split] = recs[split][: args.max_val]
            write_text(path, "".join(json.dumps(r) + "\n" for r in recs[split]))
        dataset = InstructionDataset(
            path,
            processor,
            image_root=args.data,
            mask_size=model.config.vision_config.image_size,
            system_prompt=DEFAULT_SYSTEM_PROMPT,
            on_error="stop",
        )
        caches[split] = cache_seg_states(model, dataset)
        logger.info("%s: %d water masks cached", split, caches[split]["hidden"].shape[0])
    log = train_mask_head(
        model, caches["train"], steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=0
    )
    hires = model.mask_head.float().eval()
    light = light.float().eval()
    side = model.config.vision_config.grid_size
    sar_wl = processor.image_processor.sar_wavelength
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    val = caches["val"]
    for k, rec in enumerate(recs["val"]):
        gt = val["masks"][k] > 0.5
        size = tuple(gt.shape)
        with torch.no_grad():
            h, v = val["hidden"][k : k + 1], val["vision"][k : k + 1]
            light_mask = light(h, v, (side, side), size)[0] > 0
            hires_mask = (
                hires(h, v, (side, side), size, [val["pixels"][k]], [val["wavelengths"][k]])[0] > 0
            )
        image = read_tile(rec["images"][0], args.data, sar_wl)
        gt_np = gt.numpy()
        group = f"{rec['images'][0].get('modality')} / {rec['meta'].get('label_type')}"
        rows[group]["light"].append(mask_iou(light_mask.numpy(), gt_np))
        rows[group]["hires"].append(mask_iou(hires_mask.numpy(), gt_np))
        if image.data.shape[1:] != size:
            continue
        if rec["images"][0].get("modality") == "sar":
            base = {"vv<-15dB": vv_threshold_water(image, -15.0)}
        else:
            base = {
                "ndwi>0": ndwi_water(image.data, image.wavelengths),
                "mndwi>0": mndwi_water(image.data, image.wavelengths),
            }
        for name, m in base.items():
            if m is not None:
                rows[group][name].append(mask_iou(m, gt_np))
                rows[group][f"hires@{name}"].append(rows[group]["hires"][-1])
                rows[group][f"light@{name}"].append(rows[group]["light"][-1])
    from finetune.validation_scenes import iou_summary

    report = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "train_masks": int(caches["train"]["hidden"].shape[0]),
        "val_masks": int(val["hidden"].shape[0]),
        "groups": {g: {n: iou_summary(v) for n, v in d.items()} for g, d in rows.items()},
        "log": log[-3:],
    }
    write_text(args.out, json.dumps(report, indent=1))
    print(json.dumps(report["groups"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
