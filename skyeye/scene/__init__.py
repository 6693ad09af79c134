"""Whole scenes at their own resolution: tiled analysis into one georeferenced answer.

`analyze_scene(source, prompt, out_dir)` cuts a scene into overlapping windows at its native
resolution (or a chosen gsd), runs the model on batches of windows, stitches the [SEG] masks with
overlap blending into a Cloud-Optimized GeoTIFF on the scene's grid and writes polygons (GeoJSON,
GeoPackage), a preview PNG and answer.json. `python -m skyeye.scene` is the same on the command
line. Resumable: a killed run started again continues from the finished windows.
"""

from skyeye.scene.pipeline import (
    DEFAULT_BATCH,
    DEFAULT_OVERLAP,
    DEFAULT_WINDOW,
    OUTPUT_NAMES,
    SceneResult,
    analyze_scene,
)

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_OVERLAP",
    "DEFAULT_WINDOW",
    "OUTPUT_NAMES",
    "SceneResult",
    "analyze_scene",
]
