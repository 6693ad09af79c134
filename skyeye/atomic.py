"""Writing files so that a reader never sees half of one.

Every file SkyEye writes goes to a temporary name in the same folder and is renamed over the
target only when complete (`os.replace` is atomic on POSIX and Windows): a kill or a full disk
leaves either the old complete file or the new complete one. A full disk is reported as
`DiskFullError` naming the folder and the bytes free there. Files and folders are created with
the mode the process umask gives (0o666 / 0o777 & ~umask), like any file a writer opens itself:
`tempfile.mkstemp`'s private 0600 would leave some outputs unreadable beside readable ones.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from skyeye.errors import DiskFullError

#: Prefix of temporary names (hidden, so folder listings and globs skip them).
TMP_PREFIX = ".tmp-"


def _temp_name(folder: Path, prefix: str, suffix: str) -> Path:
    return folder / f"{TMP_PREFIX}{prefix}-{secrets.token_hex(4)}{suffix}"


def _new_temp_file(folder: Path, prefix: str, suffix: str) -> Path:
    """Create an empty file under a fresh temporary name; the umask sets its mode (O_EXCL: a
    name another writer took is never reused)."""
    while True:
        tmp = _temp_name(folder, prefix, suffix)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def _new_temp_dir(folder: Path, prefix: str) -> Path:
    """Create an empty folder under a fresh temporary name; the umask sets its mode."""
    while True:
        tmp = _temp_name(folder, prefix, "")
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        return tmp


def _disk_full(target: Path, err: OSError) -> DiskFullError:
    folder = target.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = -1
    where = f"{free / 1e6:.1f} MB free" if free >= 0 else "free space unknown"
    return DiskFullError(
        f"{target}: the disk holding {folder} is full ({where}; {err.strerror}): free space or "
        "choose another output folder; the previous file, if any, is unchanged"
    )


def is_disk_full(err: BaseException) -> bool:
    """True for the OS errors a full disk or quota raises (ENOSPC, EDQUOT, EFBIG)."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` when the block ends.

    For writers that take a path (rasterio, safetensors, pyogrio, torch.save). The temporary name
    keeps `target`'s suffix (or `suffix`) so drivers that look at the extension still work. On an
    exception the temporary file is removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    ext = target.suffix if suffix is None else suffix
    tmp = _new_temp_file(target.parent, target.stem, ext)
    mode = tmp.stat().st_mode & 0o777
    try:
        yield tmp
        if tmp.is_dir():
            raise IsADirectoryError(f"{tmp}: atomic_path is for files; use atomic_dir for folders")
        if tmp.stat().st_mode & 0o777 != mode:
            # Some writers replace the file instead of writing into it (safetensors' save_file
            # leaves a private 0600 file): give it back the mode the umask gave the empty one.
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err):
            raise _disk_full(target, err) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(
    target: str | os.PathLike[str], mode: str = "w", **kwargs: Any
) -> Iterator[IO[Any]]:
    """`open(target, mode)` through a temporary file, flushed, fsynced and renamed when done."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8) to `target` atomically; returns the path."""
    with atomic_open(target, "w") as handle:
        handle.write(text)
    return Path(target)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `target` atomically; returns the path."""
    with atomic_open(target, "wb") as handle:
        handle.write(data)
    return Path(target)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; it replaces `target` when the block ends.

    An existing `target` is moved aside first and deleted only after the new folder is in
    place, so a kill leaves the old folder, the new one, or (between two renames) the old one
    under a hidden `.old-` name that the next call cleans up.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".old-{target.name}")
    if old.exists() and not target.exists():
        os.replace(old, target)  # an earlier run died between the two renames
    shutil.rmtree(old, ignore_errors=True)
    tmp = _new_temp_dir(target.parent, target.name)
    try:
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(err):
            raise _disk_full(target, err) from err
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
