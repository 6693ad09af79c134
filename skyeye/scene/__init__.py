"""Whole scenes at their own resolution: tiled analysis into one georeferenced answer.

`analyze_scene(source, prompt, out_dir, config=SceneConfig(...))` cuts a scene into overlapping
windows at its native resolution (or a chosen gsd), runs the model on batches of windows,
stitches the [SEG] masks with overlap blending into a Cloud-Optimized GeoTIFF on the scene's
grid and writes polygons (GeoJSON, GeoPackage; `skyeye.grounding.polygons`), a preview PNG and
answer.json. `python -m skyeye.scene` is the same on the command line. Resumable: a killed run
started again continues from the finished windows.

Parts, one concept per module: `config` (SceneConfig), `source` (reading windows on one grid),
`windows` (layout and batches), `reader` (prefetching reads), `infer` (the model on a batch),
`runner` (batches through the model into the store), `store` (finished windows on disk),
`stitch` (the mask COG), `outputs` (polygons, preview, boxes), `writer` (the outputs and
answer.json), `identity` and `lock` (which run a folder holds, one run at a time), `pipeline`
(the driver).
"""

from skyeye.scene.config import DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_WINDOW, SceneConfig
from skyeye.scene.pipeline import SceneResult, analyze_scene
from skyeye.scene.writer import OUTPUT_NAMES

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_OVERLAP",
    "DEFAULT_WINDOW",
    "OUTPUT_NAMES",
    "SceneConfig",
    "SceneResult",
    "analyze_scene",
]
