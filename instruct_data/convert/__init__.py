"""Converters from published instruction datasets into the unified format (plain-dict registry)."""

from __future__ import annotations

from instruct_data.convert.cdvqa import CDVQAConverter
from instruct_data.convert.chatearthnet import ChatEarthNetConverter
from instruct_data.convert.core import Converter, ConvertReport, SkipRecord, run_conversion
from instruct_data.convert.earthmind import EarthMindBenchConverter, EarthMindConverter
from instruct_data.convert.levir import LevirCCConverter, LevirMCIConverter
from instruct_data.convert.llava import LlavaConverter
from instruct_data.convert.skyeyegpt import SkyEyeGPTConverter
from instruct_data.convert.terrascope import TerraScopeBenchConverter, TerraScopeConverter

CONVERTERS: dict[str, type] = {
    "skyeyegpt": SkyEyeGPTConverter,
    "chatearthnet": ChatEarthNetConverter,
    "earthmind": EarthMindConverter,
    "earthmind-bench": EarthMindBenchConverter,
    "terrascope": TerraScopeConverter,
    "terrascope-bench": TerraScopeBenchConverter,
    "llava": LlavaConverter,
    # change over time (issue 28): captions, captions + masks, change questions
    "levir-cc": LevirCCConverter,
    "levir-mci": LevirMCIConverter,
    "cdvqa": CDVQAConverter,
}


def list_converters() -> list[str]:
    """Names accepted by ``--source``."""
    return sorted(CONVERTERS)


def get_converter(name: str) -> Converter:
    """A fresh converter for ``name``; KeyError lists the valid names."""
    if name not in CONVERTERS:
        raise KeyError(f"unknown source {name!r}; choose one of {list_converters()}")
    return CONVERTERS[name]()


__all__ = [
    "ConvertReport",
    "Converter",
    "SkipRecord",
    "get_converter",
    "list_converters",
    "run_conversion",
]
