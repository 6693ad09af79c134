"""One run at a time per output folder: an OS lock (`fcntl.flock`) on `<out>/.skyeye.lock`.

Two runs writing one `--out` at once would mix their windows (or scenes) into one answer. The
lock is held for the whole run and released by the OS when the process exits or dies (a kill,
a crash), so it is never stale. The lock file holds the holder's pid, host and start time; a
second run fails at once with `RunLockedError` naming them. The file stays after the run:
removing it would let a run that opened it just before lock a file no one else sees. On
platforms without `fcntl` (Windows) runs are not locked, and the log says so. On NFS, Linux
maps `flock` to NFS byte-range locks, so runs on several machines exclude each other too.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from skyeye.errors import RunLockedError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_NAME = ".skyeye.lock"


class RunLock:
    """Exclusive lock on the output folder `folder` (created if missing) for a run named `run`
    (e.g. "skyeye.scene"). Use as a context manager; raises `RunLockedError` on entry when
    another run holds it. Not re-entrant: a second lock on the same folder, even in this
    process (another thread of a server), is refused too."""

    def __init__(self, folder: str | os.PathLike, run: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.run = run
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None:
            logger.warning("%s: no fcntl here; this run does not lock its output folder", self.run)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # 0o666: the umask gives the lock file the mode of every other output.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{self.folder} is in use by another run ({holder}): wait for it to finish, or "
                "give another --out"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # Written in place, not through skyeye.atomic: a renamed file would be another inode,
        # unlocked. Only the holder writes it, and only a run refused the lock reads it.
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "run": self.run,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _holder(fd: int) -> str:
    """'skyeye.scene, pid 123 on host, started 2025-01-01T10:00:00+0000' from the lock file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return (
            f"{info.get('run', 'a run')}, pid {info['pid']} on {info['host']}, "
            f"started {info['started']}"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "its details are not written yet"
