"""A SkyEye server on this machine, started from the plugin for people without a remote one:
``python -m skyeye.serve --host 127.0.0.1 --port PORT`` run by the Python environment the user
picks (one that has skyeye installed), with a random API key (given to the server in its
environment, SKYEYE_API_KEY, so it is not in the process list; kept in QGIS's auth manager).

`LocalServer.start` returns at once; ``ready(url)`` is emitted once ``/v1/models`` answers, or
``failed(message)`` with one line (the last line the server wrote, e.g. "No module named
skyeye" or why the model did not load). `stop` ends the process (terminate, then kill); the
plugin calls it when it unloads and when QGIS quits, so no server outlives QGIS."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal

from .client import SkyEyeClientError

HOST = "127.0.0.1"
POLL_MS = 250


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` (connections of an ended server waiting out
    TIME_WAIT do not count, as for uvicorn, which binds with SO_REUSEADDR)."""
    with socket.socket() as sock:
        if os.name != "nt":  # on Windows the option would allow taking a port in use
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(preferred: int = 0) -> int:
    """``preferred`` when nothing listens there (a stable URL across sessions, so remembered
    jobs find their server again), else any free port."""
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def last_line(path: str) -> str:
    """The last non-empty line of a log file (what a failing server said last)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f.read()[-20000:].splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


class LocalServer(QObject):
    """One local `skyeye.serve` process; ``ready(url)`` or ``failed(message)`` after `start`."""

    ready = pyqtSignal(str)
    failed = pyqtSignal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.key = ""
        self.model = ""
        self.log_path = ""
        self._deadline = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(
        self,
        python: str,
        model: str = "skyeye-tiny",
        folder: str = "",
        jobs_dir: str = "",
        port: int = 0,
        timeout_s: float = 300.0,
    ) -> None:
        """Start the server (``ready``/``failed`` follow); a `SkyEyeClientError` at once for
        a Python that is not an executable file or an allowed folder that does not exist."""
        if self.running():
            raise SkyEyeClientError(f"the local SkyEye server already runs at {self.url}")
        if not (python and os.path.isfile(python) and os.access(python, os.X_OK)):
            raise SkyEyeClientError(
                f"'{python}' is not a Python executable: pick the python of an environment with "
                "skyeye installed (e.g. the repository's .venv/bin/python)"
            )
        if folder and not os.path.isdir(folder):
            raise SkyEyeClientError(f"the allowed folder '{folder}' does not exist")
        port = free_port(port)
        self.url, self.key, self.model = f"http://{HOST}:{port}", secrets.token_urlsafe(24), model
        command = [python, "-m", "skyeye.serve", "--host", HOST, "--port", str(port)]
        command += ["--model", model or "skyeye-tiny"]
        if folder:
            command += ["--allow-files", folder]
        if jobs_dir:
            os.makedirs(jobs_dir, exist_ok=True)
            command += ["--jobs-dir", jobs_dir]
        handle, self.log_path = tempfile.mkstemp(prefix="skyeye-serve-", suffix=".log")
        env = dict(os.environ, SKYEYE_API_KEY=self.key, PYTHONUNBUFFERED="1")
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                env=env, cwd=tempfile.gettempdir(),
            )  # fmt: skip
        except OSError as err:
            raise SkyEyeClientError(f"cannot run '{python}': {err}") from None
        finally:
            os.close(handle)
        self._deadline = time.monotonic() + timeout_s
        self._timer.start()

    def _models(self, key: str | None) -> int:
        """The HTTP status of GET /v1/models (0: nothing answers yet)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        request = urllib.request.Request(self.url + "/v1/models", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0

    def _poll(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            said = last_line(self.log_path) or f"exit status {self.process.returncode}"
            self._fail(f"the local SkyEye server did not start: {said}")
            return
        status = self._models(self.key)
        if status == 200:
            self._timer.stop()
            if self._models(None) != 401:  # a skyeye too old to read SKYEYE_API_KEY
                self._fail(
                    "the local SkyEye server runs without its key (its skyeye is older than "
                    "the plugin): update skyeye in that Python environment"
                )
                return
            self.ready.emit(self.url)
        elif status:
            self._fail(f"the local SkyEye server answered HTTP {status} on /v1/models")
        elif time.monotonic() > self._deadline:
            said = last_line(self.log_path)
            self._fail(
                "the local SkyEye server did not answer in time (the model may still be "
                f"loading; raise the timeout){': ' + said if said else ''}"
            )

    def _fail(self, message: str) -> None:
        self.stop()
        self.failed.emit(message)

    def stop(self) -> None:
        """End the process (terminate, kill after 10 s); nothing when none runs."""
        self._timer.stop()
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self.log_path:
            try:
                os.remove(self.log_path)
            except OSError:
                pass
            self.log_path = ""
