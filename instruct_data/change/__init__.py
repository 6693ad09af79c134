"""Change instruction data: labelled pairs (OSCD, SZTAKI AirChange) and STAR-style pairs from
single-date labelled rasters -> multi-image change conversations with a change ``[SEG]``
(``python -m instruct_data.change``). Held-out pairs are named in ``splits.yaml``; every record
carries its licence (``licences``)."""

from instruct_data.change.build import (
    CHANGE_SOURCES,
    build_change_data,
    get_change_source,
    list_change_sources,
    load_splits,
)
from instruct_data.change.licences import is_permissive

__all__ = [
    "CHANGE_SOURCES",
    "build_change_data",
    "get_change_source",
    "is_permissive",
    "list_change_sources",
    "load_splits",
]
