"""The demo's files on disk: one folder per server for the sessions' result files, removed at
shutdown (and, after a crash, by the next start), and uploads deleted once they are read.

Gradio copies every upload into its own cache folder and keeps it; the demo reads an upload into
memory at once (at most `--read-size` pixels a side), so the copy is deleted right after, whether
the file was accepted or refused; a georeferenced image larger than the scene window is instead
moved into its session's folder (`keep_upload`), so its whole scene can be read at full
resolution, and goes with that folder. Gradio's other temporary files (rendered overlays) are swept by
its `delete_cache`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from gradio.utils import get_upload_folder

logger = logging.getLogger(__name__)

ROOT_PREFIX = "skyeye-demo-"
PID_FILE = "server.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale_roots(parent: Path | None = None) -> list[Path]:
    """Remove work folders of demo servers that are no longer running; returns those removed."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for root in parent.glob(f"{ROOT_PREFIX}*"):
        pid_file = root / PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or still being created
        if not _alive(pid):
            shutil.rmtree(root, ignore_errors=True)
            removed.append(root)
    if removed:
        logger.info("removed %d work folder(s) of stopped demo servers", len(removed))
    return removed


def create_work_root(parent: Path | None = None) -> Path:
    """A new work folder for this server (its pid inside, so a later start can sweep it)."""
    sweep_stale_roots(parent)
    root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=parent))
    (root / PID_FILE).write_text(f"{os.getpid()}\n")
    return root


def remove_work_root(root: Path) -> None:
    """Delete the server's work folder and everything the sessions left in it."""
    shutil.rmtree(root, ignore_errors=True)


def discard_upload(path: str | Path) -> None:
    """Delete an upload from Gradio's cache (never a file outside it, e.g. a bundled example)."""
    path = Path(path).resolve()
    cache = Path(get_upload_folder()).resolve()
    if not path.is_relative_to(cache) or not path.is_file():
        return
    try:
        path.unlink()
        if path.parent != cache and not any(path.parent.iterdir()):
            path.parent.rmdir()  # Gradio puts each upload in a folder of its own
    except OSError as err:
        logger.warning("could not delete the upload %s: %s", path, err)


def keep_upload(path: str | Path, folder: Path) -> Path:
    """Move an upload out of Gradio's cache into `folder` (a session's); returns where the file
    now is. A file outside the cache (a bundled example) stays where it is."""
    path = Path(path).resolve()
    cache = Path(get_upload_folder()).resolve()
    if not path.is_relative_to(cache):
        return path
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    stem, k = target.stem, 1
    while target.exists():
        k += 1
        target = folder / f"{stem}-{k}{path.suffix}"
    shutil.move(path, target)
    if path.parent != cache and not any(path.parent.iterdir()):
        path.parent.rmdir()  # Gradio puts each upload in a folder of its own
    return target
