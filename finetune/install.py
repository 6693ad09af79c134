"""The recipe's last stage: the trained model folder replaces the installed one, with its card.

`install` copies the folder (the LoRA adapter stored in bfloat16) and writes the model card from
the run's reports and the recipe (training sets with their licences, `finetune.card_sets`);
`gate_passes` is the rule before it: no held-out number of the model installed there may get
worse (`finetune.install_gate`), unless forced.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import yaml

from finetune.card_sets import training_sets
from skyeye.atomic import atomic_dir, write_text

logger = logging.getLogger(__name__)

CARD_INFO = "finetune/recipes/skyeye-tiny-card.yaml"


def _adapter_to_bf16(path: Path) -> None:
    """Store the LoRA adapter in bfloat16 (halves it; the chat computes in bfloat16 anyway)."""
    import torch
    from safetensors.torch import load_file, save_file

    if path.is_file():
        state = load_file(str(path))
        save_file(
            {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()},
            str(path),
            metadata={"format": "pt"},
        )


def install(
    model: Path,
    target: Path,
    reports: list[Path],
    recipe_path: Path,
    *,
    permissive_only: bool = False,
) -> None:
    """Replace the model folder `target` by `model` and write its card from ``reports``
    (evaluation JSONs: the validation, the change stage's held-out pairs). The new folder is
    made beside `target` and renamed over it when complete: a kill leaves one whole model."""
    from skyeye.hub import card as hub

    info = hub.read_info(Path(CARD_INFO)) if Path(CARD_INFO).is_file() else {}
    # Every change / object set trained on, with its licence (research / non-commercial ones
    # named as such); a --permissive-only build trained on none of those.
    recipe = yaml.safe_load(recipe_path.read_text(encoding="utf-8")) or {}
    info["training_sets"] = training_sets(recipe, permissive_only)
    info.setdefault("model_id", str(target))  # the card is written in the temporary folder
    with atomic_dir(target) as tmp:
        shutil.copytree(model, tmp, dirs_exist_ok=True)
        _adapter_to_bf16(tmp / "adapter" / "adapter_model.safetensors")
        hub.write_card(
            tmp,
            hub.CardInputs(
                evaluations=[ev for report in reports for ev in hub.read_evaluation(report)],
                recipe_path=recipe_path,
                info=info,
            ),
        )
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    logger.info("installed %s (%.1f MB)", target, size / 1e6)


def gate_passes(target: Path, reports: list[Path], record: Path, force: bool) -> bool:
    """Whether the model whose ``reports`` these are may replace ``target``
    (`finetune.install_gate`); the comparison is written to ``record`` either way."""
    from finetune.install_gate import installed_numbers, losses
    from skyeye.hub.card import read_evaluation

    lost = losses(
        installed_numbers(target / "README.md"), [e for r in reports for e in read_evaluation(r)]
    )
    write_text(
        record,
        json.dumps(
            {"target": str(target), "forced": force, "losses": [str(x) for x in lost]}, indent=1
        ),
    )
    for loss in lost:
        logger.warning("held-out number lost: %s", loss)
    return force or not lost
