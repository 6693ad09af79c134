"""`SceneConfig`: how a whole scene is analysed, the one object the CLI, the chat's follow-up,
the evaluation, the batch, MCP and the demo pass to `analyze_scene`.

Fields carry their help text in ``metadata={"help": ...}`` (PEFT's config style); options are
`Literal`s. A config is checked when it is made (`SceneError` naming the value at fault), so a
bad window or overlap fails before a scene is opened or a model loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from skyeye.errors import SceneError
from skyeye.io.gdal import ReadOptions
from skyeye.scene.identity import dtype_label, model_identity

DEFAULT_WINDOW = 512
DEFAULT_OVERLAP = 64
DEFAULT_BATCH = 8


@dataclass(frozen=True)
class SceneConfig:
    """The settings of one scene analysis (see `skyeye.scene.analyze_scene`)."""

    gsd: float | None = field(
        default=None,
        metadata={
            "help": "output pixel size in the scene CRS's units (None: native, the finest band's)"
        },
    )
    window: int = field(
        default=DEFAULT_WINDOW,
        metadata={
            "help": "window side in pixels of the output grid; the tower sees each window resized "
            "to its image size and the mask is resampled back to the window"
        },
    )
    overlap: int = field(
        default=DEFAULT_OVERLAP,
        metadata={"help": "pixels shared by neighbouring windows (blended), in [0, window)"},
    )
    batch: int = field(default=DEFAULT_BATCH, metadata={"help": "windows per model call"})
    bbox: Sequence[float] | None = field(
        default=None,
        metadata={"help": "analyse only this box (minx, miny, maxx, maxy), given in bbox_crs"},
    )
    bbox_crs: str | None = field(
        default=None, metadata={"help": "EPSG code of bbox (None: the scene's CRS)"}
    )
    crs: Literal["4326", "native"] = field(
        default="4326",
        metadata={"help": "CRS of mask.geojson: '4326' (lon/lat) or 'native' (the scene's)"},
    )
    resume: bool = field(
        default=True,
        metadata={
            "help": "continue a run of the same scene and settings in out_dir (False: start over)"
        },
    )
    progress: bool = field(
        default=True, metadata={"help": "show a tqdm bar (windows, windows/s, time left)"}
    )
    max_new_tokens: int = field(default=64, metadata={"help": "longest answer per window"})
    force_answer: str | None = field(
        default=None,
        metadata={
            "help": "skip generation and take this as every window's answer (e.g. "
            "'<p>water</p> [SEG]'): one forward pass per batch decodes its masks"
        },
    )
    device: str = field(
        default="cpu", metadata={"help": "torch device a model given by name is loaded on"}
    )
    dtype: Any = field(
        default="auto",
        metadata={
            "help": "'auto', a torch.dtype or None (the checkpoint's): the dtype a model given "
            "by name is loaded in ('auto': float32, the LLM in bfloat16 where that is fast; "
            "see skyeye.scene.infer.window_dtypes)"
        },
    )
    sensor: str | None = field(
        default=None, metadata={"help": "sensor of the scene (e.g. sentinel-2; None: guessed)"}
    )
    band_names: Sequence[str] | None = field(
        default=None, metadata={"help": "band names, as for skyeye.io.read_raster"}
    )
    wavelengths: Sequence[float] | None = field(
        default=None, metadata={"help": "band centre wavelengths in µm, as for read_raster"}
    )
    change_context: float = field(
        default=0.25,
        metadata={
            "help": "two-date runs: a window whose change mask covers at least this share of "
            "its valid pixels is seen again over twice its size at half resolution, and the "
            "two change masks merged (the decoder finds less of a change that fills its view; "
            "skyeye.scene.change_context); 0 turns it off"
        },
    )
    read_options: ReadOptions | None = field(
        default=None,
        metadata={
            "help": "GDAL decoding threads and block cache of the scene's reads (None: every "
            "core, skyeye.scene.source.SCENE_CACHE_MIB)"
        },
    )

    def __post_init__(self) -> None:
        if self.crs not in ("4326", "native"):
            raise SceneError(f"crs must be '4326' or 'native', got {self.crs!r}")
        if not 0 <= self.change_context <= 1:
            raise SceneError(
                f"--change-context must be a share in [0, 1] (0: off), got {self.change_context}"
            )
        if self.batch < 1:
            raise SceneError(f"--batch must be at least 1, got {self.batch}")
        if self.window < 1 or self.overlap < 0 or self.overlap >= self.window:
            raise SceneError(
                f"--overlap must be in [0, window) and --window positive, got window "
                f"{self.window}, overlap {self.overlap}"
            )

    def replace(self, **changes: Any) -> SceneConfig:
        """A copy with `changes` (field names of this class; another name is a TypeError)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"not SceneConfig fields: {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def settings(self, prompt: str, model: Any) -> dict[str, Any]:
        """The settings that change a window's answer, as answer.json and the run's identity
        record them (model: its label; dtype: the dtypes the windows run in)."""
        return {
            "prompt": prompt,
            "window": self.window,
            "overlap": self.overlap,
            "gsd": self.gsd,
            "bbox": None if self.bbox is None else [float(v) for v in self.bbox],
            "bbox_crs": self.bbox_crs,
            "model": model_identity(model)["label"],
            "dtype": dtype_label(model, self.dtype, self.device),
            "max_new_tokens": self.max_new_tokens,
            "force_answer": self.force_answer,
        }
