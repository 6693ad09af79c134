"""The training sets a recipe trains on, with their licences, for the model card.

Licences come from the builders that carry them on every record: `instruct_data.objects.LICENCES`
(aircraft, scene and region sets) and `instruct_data.change.licences.LICENCES` (OSCD, AirChange:
research / non-commercial; the STAR-style pairs: permissive). A recipe's ``change_data.sources``
and ``objects_data.datasets`` name the sets; sources held out for validation
(`instruct_data/objects/heldout_sources.yaml`) and, in a ``--permissive-only`` build, the
research / non-commercial sets are not trained on and not listed. The raster scenes of
``instruct_data.from_rasters`` (all permissive) are described in the card's ``training_data`` text.
"""

from __future__ import annotations

from typing import Any

__all__ = ["training_sets"]


def training_sets(recipe: dict[str, Any], permissive_only: bool = False) -> list[dict[str, Any]]:
    """``[{name, licence, permissive}]`` of the recipe's change and object sets (the card's
    ``training_sets``, `skyeye.hub.licences`), in the recipe's order."""
    from instruct_data.change.licences import get_licence
    from instruct_data.objects import LICENCES
    from instruct_data.objects.__main__ import heldout_sources

    out: list[dict[str, Any]] = []
    for source in (recipe.get("change_data") or {}).get("sources", []):
        change = get_licence(source)
        out.append({"name": source, "licence": change.name, "permissive": change.commercial})
    held, _ = heldout_sources()
    for dataset in (recipe.get("objects_data") or {}).get("datasets", []):
        if dataset not in LICENCES:
            raise KeyError(
                f"objects_data: no licence recorded for {dataset!r}; known: {sorted(LICENCES)}"
            )
        if dataset in held:
            continue  # validation only: never a training record
        licence, permissive = LICENCES[dataset]
        out.append({"name": dataset, "licence": licence, "permissive": permissive})
    return [s for s in out if s["permissive"] or not permissive_only]
