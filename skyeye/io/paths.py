"""Image paths from data files -> files on disk: one resolver for converters, validate, training
and evaluation.

A record's image `path` is a file, a band-per-file folder (Sentinel-2 ``*_B02.tif``,
BigEarthNet-S1 ``*_VV.tif`` / ``*_VH.tif``: what `skyeye.io.read_raster` reads), or a list of
files stacked in order. Paths are relative to a root and must stay inside it: an absolute path
(``/etc/passwd``) or one that climbs out with ``..`` is refused unless the caller explicitly
allows absolute paths. The check is lexical (symbolic links inside the root are followed, as
datasets often link their image folders). Only regular files and folders are accepted: a FIFO or
a device would hang or stream forever when opened, so `stat` is checked before anything opens it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

from skyeye.errors import ImagePathError, UnsafePathError
from skyeye.io.image import band_name_from_filename

#: Suffixes of the single-band files a band folder holds (as `read_raster` reads them).
BAND_FILE_EXTENSIONS = (".tif", ".tiff", ".jp2")
#: Suffixes tried, in order, for a record path given without one (SkyEyeGPT ``image_id``).
GUESS_EXTENSIONS = (".jpg", ".png", ".tif", ".tiff", ".jpeg", ".jp2")


def _is_absolute(path: str) -> bool:
    return (
        PurePosixPath(path).is_absolute()
        or PureWindowsPath(path).is_absolute()
        or (bool(PureWindowsPath(path).drive))
    )


def resolve_under_root(
    path: str, root: str | os.PathLike[str], *, allow_absolute: bool = False
) -> Path:
    """``root/path`` for a relative `path` that stays inside `root`.

    Raises `UnsafePathError` for an empty path or one holding NUL, an absolute path (unless
    `allow_absolute`, when it is returned as it is), and a path whose ``..`` parts leave `root`.
    """
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise UnsafePathError(f"image path {path!r}: not a usable path string")
    if _is_absolute(path):
        if allow_absolute:
            return Path(path)
        raise UnsafePathError(
            f"image path {path!r} is absolute: data files must give paths relative to the image "
            "root; fix the record, or pass --allow-absolute-paths if you trust this data file"
        )
    norm = os.path.normpath(path.replace("\\", "/"))
    if norm == ".." or norm.startswith("../"):
        raise UnsafePathError(
            f"image path {path!r} leaves the image root {root} ('..'): fix the record or move the "
            "images under the root"
        )
    return Path(root) / norm


def check_readable(path: Path) -> Path:
    """`path` if it is a regular non-empty file or a band folder; `ImagePathError` otherwise.

    Uses `stat` only (nothing is opened), so FIFOs and devices are refused without blocking.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImagePathError(f"missing image {path}: no such file or folder") from None
    except OSError as err:
        raise ImagePathError(f"{path}: cannot stat the image: {err.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        band_folder_files(path)
        return path
    if not stat.S_ISREG(st.st_mode):
        raise ImagePathError(
            f"{path}: not a regular file (a FIFO, socket or device): images must be files"
        )
    if st.st_size == 0:
        raise ImagePathError(f"{path}: the image file is empty (0 bytes)")
    return path


def band_folder_files(folder: Path) -> list[Path]:
    """The band files of a band-per-file folder (sorted), each named with a band suffix.

    Raises `ImagePathError` when the folder holds no ``*_<band>.tif/.tiff/.jp2`` regular file.
    """
    try:
        entries = sorted(folder.iterdir())
    except OSError as err:
        raise ImagePathError(f"{folder}: cannot list the band folder: {err.strerror}") from None
    files = [
        f
        for f in entries
        if f.suffix.lower() in BAND_FILE_EXTENSIONS
        and band_name_from_filename(f) is not None
        and stat.S_ISREG(f.stat().st_mode)
    ]
    if not files:
        raise ImagePathError(
            f"{folder}: a folder without band files (*_B02.tif, *_VV.tif, ...): point the record "
            "at an image file or a band-per-file folder"
        )
    return files


def band_folder_names(folder: Path) -> list[str]:
    """Band names of a band folder from its file names (``x_VV.tif`` -> ``VV``), in file order."""
    return [str(band_name_from_filename(f)) for f in band_folder_files(folder)]


def resolve_image(
    path: str | Sequence[str],
    root: str | os.PathLike[str],
    *,
    allow_absolute: bool = False,
    guess_suffix: bool = False,
) -> Path | list[Path]:
    """A record's image `path` (one path or a list) -> checked file(s) / band folder under `root`.

    `guess_suffix`: a path without suffix that does not exist resolves to the first
    ``path.EXT`` that does (`GUESS_EXTENSIONS`), as converters of sources that store bare ids do.
    Raises `UnsafePathError` (outside the root) or `ImagePathError` (missing or not a file).
    Returns a Path for a string `path`, a list of Paths for a list.
    """
    if isinstance(path, (list, tuple)):
        if not path:
            raise ImagePathError("image path is an empty list")
        return [
            _resolve_one(p, root, allow_absolute=allow_absolute, guess_suffix=guess_suffix)
            for p in path
        ]
    return _resolve_one(path, root, allow_absolute=allow_absolute, guess_suffix=guess_suffix)  # type: ignore[arg-type]


def _resolve_one(
    path: str, root: str | os.PathLike[str], *, allow_absolute: bool, guess_suffix: bool
) -> Path:
    full = resolve_under_root(path, root, allow_absolute=allow_absolute)
    if guess_suffix and not full.suffix and not os.path.lexists(full):
        for ext in GUESS_EXTENSIONS:
            candidate = full.with_name(full.name + ext)
            if os.path.exists(candidate):  # False also for a name too long
                full = candidate
                break
    return check_readable(full)
