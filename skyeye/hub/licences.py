"""The model card's training sets and their licences (``training_sets`` in a card's info).

The recipe's driver (`finetune.card_sets`) lists what a model was trained on with each set's
licence; the card shows them as a table and says when research / non-commercial data is among
them (``../shared/data/README.md``: a model trained on such sets must say so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skyeye.errors import HubError

__all__ = ["TrainingSet", "licence_section", "training_sets"]


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
