"""Licences of the change sources: every change record carries its own (``meta.licence``,
``meta.commercial_use``), so a permissive-only build can leave the research-only ones out.

The research / non-commercial sets (OSCD's change maps are CC BY-NC-SA; SZTAKI AirChange is "free
for scientific use") must be named in the card of any model trained on them
(``../shared/data/README.md``); `is_permissive` is the one test of a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["LICENCES", "Licence", "get_licence", "is_permissive", "list_licences"]


@dataclass(frozen=True)
class Licence:
    """name: the licence as the source states it; commercial: whether commercial use is allowed;
    cite: the attribution the source asks for."""

    name: str
    commercial: bool
    cite: str

    def meta(self) -> dict[str, Any]:
        """The record's licence fields."""
        return {"licence": self.name, "commercial_use": self.commercial, "cite": self.cite}


LICENCES: dict[str, Licence] = {
    "oscd-s2-change": Licence(
        "change maps CC BY-NC-SA; images modified Copernicus Sentinel-2 data 2015-2018",
        False,
        "Daudt, Le Saux, Boulch, Gousseau: Urban change detection for multispectral earth "
        "observation using convolutional neural networks, IGARSS 2018",
    ),
    "sztaki-airchange": Licence(
        "SZTAKI AirChange Benchmark: free for scientific use (no open licence)",
        False,
        "Benedek & Sziranyi, IEEE TGRS 2009; ICPR 2008",
    ),
    "star-pairs": Licence(
        "derived from permissive rasters (per scene: see meta.scene_source and its SOURCE.txt)",
        True,
        "Zheng et al., Change is Everywhere (STAR), ICCV 2021 (method)",
    ),
}


def list_licences() -> list[str]:
    """Sources with a known licence."""
    return sorted(LICENCES)


def get_licence(source: str) -> Licence:
    """The licence of ``source``; KeyError listing the known ones."""
    if source not in LICENCES:
        raise KeyError(f"no licence recorded for {source!r}; known: {list_licences()}")
    return LICENCES[source]


def is_permissive(record: dict) -> bool:
    """True unless the record says commercial use is not allowed (``meta.commercial_use``)."""
    return (record.get("meta") or {}).get("commercial_use", True) is not False
