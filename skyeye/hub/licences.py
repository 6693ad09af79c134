"""The model card's training sets and their licences (``training_sets`` in a card's info).

The recipe's driver (`finetune.card_sets`) lists what a model was trained on with each set's
licence; the card shows them as a table and says when research / non-commercial data is among
them (``../shared/data/README.md``: a model trained on such sets must say so). The card's metadata
records them too (``training_sets``), so a card rewritten without them (`python -m skyeye.hub card`
on an installed model) keeps its table and its licence (`previous_card_info`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from skyeye.errors import HubError

logger = logging.getLogger(__name__)

__all__ = ["TrainingSet", "card_license", "licence_section", "previous_card_info", "training_sets"]


@dataclass(frozen=True)
class TrainingSet:
    """One training set as the card lists it: its name, its licence as the source states it,
    and whether that licence allows commercial use (research / non-commercial sets do not)."""

    name: str
    licence: str
    permissive: bool


def training_sets(info: dict[str, Any]) -> list[TrainingSet]:
    """The ``training_sets`` of a card's info (a list of ``{name, licence, permissive}``)."""
    raw = info.get("training_sets") or []
    if not isinstance(raw, list):
        raise HubError("training_sets: a list of {name, licence, permissive} entries")
    out = []
    for k, item in enumerate(raw):
        if not isinstance(item, dict) or not {"name", "licence", "permissive"} <= set(item):
            raise HubError(f"training_sets[{k}]: give name, licence and permissive (true/false)")
        out.append(TrainingSet(str(item["name"]), str(item["licence"]), bool(item["permissive"])))
    return out


def previous_card_info(folder: Path) -> dict[str, Any]:
    """The ``training_sets`` of the card already in ``folder`` (its README.md metadata, where
    every card written here records them), as a card info; {} without a card or sets."""
    path = folder / "README.md"
    if not path.is_file():
        return {}
    try:
        data = ModelCard.load(path).data.to_dict()
    except (ValueError, OSError) as err:  # not a card with YAML metadata
        raise HubError(f"{path}: cannot read the existing card ({err}); move it aside") from err
    if "training_sets" not in data:
        return {}
    logger.info("training sets kept from the existing card %s", path)
    return {"training_sets": data["training_sets"]}


def licence_section(sets: list[TrainingSet]) -> str:
    """The card's "Training sets and licences" text: one row per set, research / non-commercial
    sets named as such and what that means for the model; '' without sets."""
    if not sets:
        return ""
    rows = ["| training set | licence | use |", "|---|---|---|"]
    for item in sets:
        use = "permissive" if item.permissive else "**research / non-commercial only**"
        rows.append(f"| {item.name} | {item.licence} | {use} |")
    restricted = [item.name for item in sets if not item.permissive]
    if restricted:
        rows.append("")
        rows.append(
            f"Trained on research / non-commercial data ({', '.join(restricted)}): the weights "
            "inherit those terms. A permissive-only build of the recipe (`--permissive-only`) "
            "leaves these sets out."
        )
    else:
        rows.append("")
        rows.append("Every listed training set allows commercial use.")
    return "\n".join(rows)


def card_license(info_license: str | None, sets: list[TrainingSet]) -> tuple[str, str | None]:
    """The card metadata's ``(license, license_name)``: the info's licence (default apache-2.0)
    and no name, or ``("other", "research-non-commercial")`` when a training set is research /
    non-commercial: the weights inherit its terms, so a permissive licence in the metadata would
    misstate them. An info that names a permissive licence anyway is an error (`HubError`)."""
    restricted = [item.name for item in sets if not item.permissive]
    if not restricted:
        return info_license or "apache-2.0", None
    if info_license not in (None, "other"):
        raise HubError(
            f"license: {info_license} contradicts the research / non-commercial training sets "
            f"({', '.join(restricted)}); drop the card info's license (the card then says "
            "'other', research / non-commercial) or build with --permissive-only"
        )
    return "other", "research-non-commercial"
