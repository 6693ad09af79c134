"""``--inputs`` -> the scenes of a batch: a folder, a glob, a list file or a STAC ItemCollection.

A folder holds raster files (GeoTIFF, JP2, PNG/JPEG), STAC item ``.json`` files and band-per-file
product folders (a sub-folder of single-band files, e.g. a BigEarthNet patch), one scene each. A list file (``.txt``) names one raster, band folder or STAC item per line (relative to the
list file; ``#`` comments). A ``.json`` is a STAC ItemCollection (or one Item).
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyeye.errors import StacError
from skyeye.io.stac import StacScene, read_stac_items, scene_from_item

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".png", ".jpg", ".jpeg"}


@dataclass
class Scene:
    """One scene of a batch.

    key: unique folder name of its outputs. source: what `analyze_scene` reads (a file, a band
    folder, or a list of band files). label: where it came from (for messages). error: why it
    cannot even be resolved (recorded as a failed scene, never raised).
    """

    key: str
    label: str
    source: str | list[str] | None = None
    scene_id: str | None = None
    datetime: str | None = None
    geometry: dict[str, Any] | None = None
    band_names: list[str] | None = None
    wavelengths: list[float] | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "scene"


def _from_stac(label: str, item: dict[str, Any], base: Path) -> Scene:
    try:
        resolved: StacScene = scene_from_item(item, base, label)
    except StacError as err:
        return Scene(key=_slug(str(item.get("id") or label)), label=label, error=str(err))
    source = resolved.source
    return Scene(
        key=_slug(resolved.scene_id or label),
        label=label,
        source=[str(p) for p in source] if isinstance(source, list) else str(source),
        scene_id=resolved.scene_id,
        datetime=resolved.datetime,
        geometry=resolved.geometry,
        band_names=resolved.band_names,
        wavelengths=resolved.wavelengths_of(resolved.band_names),
    )


def _is_band_folder(path: Path) -> bool:
    return path.is_dir() and any(
        p.suffix.lower() in (".tif", ".tiff", ".jp2") for p in path.iterdir() if p.is_file()
    )


def _from_path(path: Path) -> list[Scene]:
    if path.suffix.lower() == ".json":
        try:
            items = read_stac_items(path)
        except StacError as err:
            return [Scene(key=_slug(path.stem), label=str(path), error=str(err))]
        return [_from_stac(label, item, path.parent) for label, item in items]
    return [Scene(key=_slug(path.stem), label=str(path), source=str(path))]


def _unique(scenes: list[Scene]) -> list[Scene]:
    seen: dict[str, int] = {}
    for scene in scenes:
        n = seen.get(scene.key, 0)
        seen[scene.key] = n + 1
        if n:
            scene.key = f"{scene.key}-{n + 1}"
    return scenes


def collect_scenes(inputs: str) -> list[Scene]:
    """Expand ``inputs`` into scenes (sorted, unique keys). Raises ValueError when it names
    nothing; unreadable entries become scenes with an ``error``."""
    path = Path(inputs).expanduser()
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir()
            if (p.is_file() and (p.suffix.lower() in RASTER_SUFFIXES or p.suffix.lower() == ".json"))
            or _is_band_folder(p)
        )  # fmt: skip
        scenes = [s for f in files for s in _from_path(f)]
    elif path.is_file() and path.suffix.lower() == ".txt":
        scenes = []
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                entry = Path(line).expanduser()
                entry = entry if entry.is_absolute() else path.parent / entry
                scenes.extend(_from_path(entry))
    elif path.is_file():
        scenes = _from_path(path)
    else:
        matches = sorted(glob.glob(inputs, recursive=True))
        scenes = [s for m in matches for s in _from_path(Path(m))]
    if not scenes:
        raise ValueError(
            f"--inputs {inputs}: no scenes found (give a folder of rasters, a glob, a .txt list "
            "or a STAC ItemCollection .json)"
        )
    return _unique(scenes)
