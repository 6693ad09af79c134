"""`python -m finetune.merge --model IN --out OUT`: fold a model folder's LoRA adapter into its LLM.

The result is a standalone model folder (`llm_embedded`: the merged LLM is stored in OUT/llm, no
adapter, no reference to the base LLM) that `SkyEyeForConditionalGeneration.from_pretrained`, the
chat and the demo load like any other, and that gives the same logits as IN with its adapter.
Trained token rows (peft trainable tokens) are merged into the embedding too.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from skyeye.constants import DTYPE_NAMES, torch_dtype

logger = logging.getLogger(__name__)


def merge_model(model_path: str | Path, out: str | Path, *, dtype: str | None = None) -> Path:
    """Load `model_path` with its adapter, merge, and write a standalone folder to `out`."""
    from skyeye.bundled import resolve_model_folder
    from skyeye.modeling.folder_check import check_model_folder
    from skyeye.modeling.model import SkyEyeForConditionalGeneration
    from skyeye.processing.processor import SkyEyeProcessor

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new --out folder")
    check_model_folder(resolve_model_folder(model_path))
    model = SkyEyeForConditionalGeneration.from_pretrained(model_path)
    processor = SkyEyeProcessor.from_pretrained(model_path)
    if not hasattr(model.language_model, "peft_config"):
        raise ValueError(f"{model_path} has no LoRA adapter (no adapter/ folder): nothing to merge")
    model.language_model = model.language_model.merge_and_unload()
    model.config.llm_embedded = True
    model.config.text_base_vocab_size = None  # the added rows now live in the embedded LLM
    if dtype is not None:
        model.language_model.to(torch_dtype(dtype))
    model.save_pretrained(out, processor=processor, dtype=torch_dtype(dtype) if dtype else None)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finetune.merge", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model", required=True, help="model folder with an adapter/ (e.g. runs/x/model)"
    )
    parser.add_argument("--out", required=True, help="new folder for the merged standalone model")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPE_NAMES),
        default=None,
        help="store the merged weights in this dtype (default: as loaded, float32)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        folder = merge_model(args.model, args.out, dtype=args.dtype)
    except (FileExistsError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"merged model written to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
