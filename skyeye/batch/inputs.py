"""``--inputs`` -> the scenes of a batch: a folder, a glob, a list file or a STAC ItemCollection.

A folder holds raster files (GeoTIFF, JP2, PNG/JPEG), STAC item ``.json`` files and band-per-file
product folders (a sub-folder of single-band files, e.g. a BigEarthNet patch), one scene each.
Every other entry of the folder gets a row too, never a silent drop: a dangling symbolic link,
a link loop or an unreadable entry is a ``failed`` scene with the reason; a file of another
kind, a folder without band files, or a link back to the input folder (``dirloop -> .``) is
``skipped`` as not a scene. Folders are never searched recursively, so no link can loop.
Hidden entries (``.name``) are left out. A list file (``.txt``) names one raster, band folder or
STAC item per line (relative to the list file; ``#`` comments). A ``.json`` is a STAC
ItemCollection (or one Item).

A scene's key (its output folder under ``OUT/scenes/``) is ``<name>-<hash>``: its file name and
a short hash of its path relative to the input (plus the item id for a STAC item), so it never
depends on which other files the input holds.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyeye.errors import StacError
from skyeye.io.stac import StacScene, read_stac_items, scene_from_item

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".png", ".jpg", ".jpeg"}
BAND_SUFFIXES = {".tif", ".tiff", ".jp2"}


@dataclass
class Scene:
    """One entry of a batch.

    key: folder name of its outputs (stable: see `scene_key`). source: what `analyze_scene`
    reads (a file, a band folder, or a list of band files). label: where it came from (for
    messages). error: why it cannot even be resolved (a ``failed`` row, never raised).
    skip: why the entry is not a scene at all (a ``skipped`` row).
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
    skip: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "scene"


def scene_key(name: str, rel: str) -> str:
    """``<slug of name>-<8 hex of sha256(rel)>``: `rel` is the entry's path relative to the input
    (posix), so the key depends on that entry alone, not on its neighbours or their order."""
    return f"{_slug(name)[:80]}-{hashlib.sha256(rel.encode()).hexdigest()[:8]}"


def _from_stac(label: str, item: dict[str, Any], base: Path, rel: str) -> Scene:
    item_id = str(item.get("id") or "")
    key = scene_key(item_id or Path(rel).stem, f"{rel}#{item_id}")
    try:
        resolved: StacScene = scene_from_item(item, base, label)
    except StacError as err:
        return Scene(key=key, label=label, error=str(err))
    source = resolved.source
    return Scene(
        key=key,
        label=label,
        source=[str(p) for p in source] if isinstance(source, list) else str(source),
        scene_id=resolved.scene_id,
        datetime=resolved.datetime,
        geometry=resolved.geometry,
        band_names=resolved.band_names,
        wavelengths=resolved.wavelengths_of(resolved.band_names),
    )


def _is_band_folder(path: Path) -> bool:
    return any(p.suffix.lower() in BAND_SUFFIXES for p in path.iterdir() if p.is_file())


def _entry(path: Path, rel: str, root: Path | None, only_rasters: bool) -> list[Scene]:
    """The scenes (or the one failed/skipped row) of one input entry. `root`: the folder being
    listed (a link back to it or above it is not followed); `only_rasters`: skip files without
    a raster suffix (a folder's entries; a file named explicitly is read whatever its name)."""
    label, key = str(path), scene_key(path.stem or path.name, rel)

    def failed(reason: str) -> list[Scene]:
        return [Scene(key=key, label=label, error=reason)]

    def skipped(reason: str) -> list[Scene]:
        return [Scene(key=key, label=label, skip=reason)]

    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return failed(
                f"{path}: a dangling symbolic link (to {os.readlink(path)}, which does not "
                "exist): fix or remove the link"
            )
        return failed(f"{path}: no such file or folder: check the path")
    except OSError as err:
        if err.errno == errno.ELOOP:
            return failed(f"{path}: a symbolic link loop: fix or remove the link")
        return failed(f"{path}: cannot read it ({err.strerror}): make it readable or remove it")
    if stat.S_ISDIR(st.st_mode):
        if root is not None:
            resolved, top = path.resolve(), root.resolve()
            if top == resolved or top.is_relative_to(resolved):
                return skipped(
                    f"{path}: links back to the input folder (or a folder above it): not a "
                    "scene, and never followed"
                )
        try:
            band_folder = _is_band_folder(path)
        except OSError as err:
            return failed(f"{path}: cannot list the folder ({err.strerror}): make it readable")
        if band_folder:
            return [Scene(key=key, label=label, source=str(path))]
        return skipped(
            f"{path}: a folder without band files ({'/'.join(sorted(BAND_SUFFIXES))}): not a "
            "scene (sub-folders are not searched)"
        )
    if not stat.S_ISREG(st.st_mode):
        return skipped(f"{path}: not a regular file (a FIFO, socket or device): not a scene")
    if not os.access(path, os.R_OK):
        return failed(f"{path}: cannot read it (permission denied): make it readable")
    if path.suffix.lower() == ".json":
        try:
            items = read_stac_items(path)
        except StacError as err:
            return failed(str(err))
        return [_from_stac(lab, item, path.parent, rel) for lab, item in items]
    if only_rasters and path.suffix.lower() not in RASTER_SUFFIXES:
        return skipped(
            f"{path}: not a raster ({', '.join(sorted(RASTER_SUFFIXES))}) nor a STAC item "
            ".json: not a scene"
        )
    return [Scene(key=key, label=label, source=str(path))]


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (keys are relative to it)."""
    parts = Path(pattern).parts
    first = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts) - 1)
    return Path(*parts[:first]) if first else Path(".")


def _unique(scenes: list[Scene]) -> list[Scene]:
    """Two entries with one key (one file listed twice, two items of one id in one file) get
    ``-2``, ``-3``... in their listed order: only a repeat of itself shifts an entry's key."""
    seen: dict[str, int] = {}
    for scene in scenes:
        n = seen.get(scene.key, 0)
        seen[scene.key] = n + 1
        if n:
            scene.key = f"{scene.key}-{n + 1}"
    return scenes


def collect_scenes(inputs: str) -> list[Scene]:
    """Expand ``inputs`` into scenes (sorted, unique keys). Raises ValueError when it names
    nothing; unreadable entries become scenes with an ``error``, entries that are not scenes
    rows with a ``skip`` reason."""
    path = Path(inputs).expanduser()
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        scenes = [s for p in entries for s in _entry(p, p.name, path, only_rasters=True)]
    elif path.is_file() and path.suffix.lower() == ".txt":
        scenes = []
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                entry = Path(line).expanduser()
                rel = Path(os.path.normpath(entry)).as_posix()
                entry = entry if entry.is_absolute() else path.parent / entry
                scenes.extend(_entry(entry, rel, None, only_rasters=False))
    elif path.is_file():
        scenes = _entry(path, path.name, None, only_rasters=False)
    else:
        root = _glob_root(inputs)
        scenes = []
        for match in sorted(glob.glob(inputs, recursive=True)):
            entry = Path(match)
            rel = Path(os.path.relpath(entry, root)).as_posix()
            scenes.extend(_entry(entry, rel, root, only_rasters=False))
    if not scenes:
        raise ValueError(
            f"--inputs {inputs}: no scenes found (give a folder of rasters, a glob, a .txt list "
            "or a STAC ItemCollection .json)"
        )
    return _unique(scenes)
