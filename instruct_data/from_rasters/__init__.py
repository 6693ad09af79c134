"""Instruction conversations from labelled rasters (``python -m instruct_data.from_rasters``).

Scenes (an image plus class-raster, vector or spectral-index labels) are tiled; every tile is
written as a GeoTIFF and described by templated conversations in the unified format: captions
with proportions and positions, balanced yes/no presence, proportions, the box of the largest
region of a class, and [SEG] masks. See docs/from_rasters.md.
"""

from instruct_data.from_rasters.generate import RasterInstructionGenerator, split_of
from instruct_data.from_rasters.labels import LabelLayer, build_layers
from instruct_data.from_rasters.spec import (
    ImageSpec,
    LabelSpec,
    Options,
    SceneSpec,
    SpecError,
    load_spec,
)
from instruct_data.from_rasters.summary import Summary

__all__ = [
    "ImageSpec",
    "LabelLayer",
    "LabelSpec",
    "Options",
    "RasterInstructionGenerator",
    "SceneSpec",
    "SpecError",
    "Summary",
    "build_layers",
    "load_spec",
    "split_of",
]
