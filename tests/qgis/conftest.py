"""QGIS tests: a `QgsApplication` (offscreen) with the plugin on its path, a fake `iface` built of
real QGIS widgets, and a live `python -m skyeye.serve` (from the repository's .venv) with the
bundled skyeye-tiny. Under a Python without `qgis` (the .venv's pytest) nothing here is collected.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

try:  # `qgis` alone may be this folder as a namespace package (tests/ is on sys.path)
    import qgis.core  # noqa: F401
except ImportError:
    collect_ignore_glob = ["*"]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SCENE = EXAMPLES / "sentinel2_berlin_l1c.tif"
KEY = "qgis-test-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(app, done, timeout: float = 120.0) -> bool:
    """Process Qt events until ``done()`` is true (True) or ``timeout`` seconds passed (False)."""
    deadline = time.time() + timeout
    while not done():
        if time.time() > deadline:
            return False
        app.processEvents()
        time.sleep(0.05)
    return True


def bar_texts(iface) -> list[str]:
    """The messages in the message bar (the one shown last)."""
    bar = iface.messageBar()
    texts = [item.text() for item in bar.items() if item is not bar.currentItem()]
    return texts + ([bar.currentItem().text()] if bar.currentItem() is not None else [])


@pytest.fixture(scope="session")
def qgis_profile(tmp_path_factory) -> Path:
    """The QGIS profile folder of the tests' QgsApplication (settings, auth database)."""
    return tmp_path_factory.mktemp("qgis-profile")


@pytest.fixture(scope="session")
def qgis_app(qgis_profile):
    """The QgsApplication (GUI classes, offscreen), Processing and an auth manager unlocked."""
    sys.path.insert(0, "/usr/share/qgis/python/plugins")
    sys.path.insert(0, str(REPO / "qgis_plugin"))
    from qgis.core import QgsApplication

    profile = qgis_profile
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], True, str(profile))
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    QgsApplication.authManager().setMasterPassword("test-master", True)
    yield app
    app.exitQgis()


class FakeIface:
    """The parts of `QgisInterface` the plugin uses, made of real QGIS widgets."""

    def __init__(self) -> None:
        from qgis.gui import QgsMapCanvas, QgsMessageBar
        from qgis.PyQt.QtWidgets import QMainWindow

        self.window = QMainWindow()
        self.bar = QgsMessageBar()
        self.canvas = QgsMapCanvas()
        self.menu: list = []

    def mainWindow(self):  # noqa: N802
        return self.window

    def messageBar(self):  # noqa: N802
        return self.bar

    def mapCanvas(self):  # noqa: N802
        return self.canvas

    def addDockWidget(self, area, dock):  # noqa: N802
        self.window.addDockWidget(area, dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.window.removeDockWidget(dock)

    def addPluginToMenu(self, menu, action):  # noqa: N802
        self.menu.append(action)

    def removePluginMenu(self, menu, action):  # noqa: N802
        self.menu.remove(action)


@pytest.fixture
def iface(qgis_app):
    fake = FakeIface()
    yield fake
    # Delete the widgets now, under the running QgsApplication: left to the interpreter's exit,
    # a message bar that showed a message crashes it (segmentation fault) after the tests.
    from qgis.PyQt import sip

    for widget in (fake.bar, fake.canvas, fake.window):
        if not sip.isdeleted(widget):
            sip.delete(widget)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """(url, jobs folder) of a live `python -m skyeye.serve --model skyeye-tiny` reading
    examples/ (--allow-files), with an API key."""
    python = REPO / ".venv" / "bin" / "python"
    port = _free_port()
    jobs = tmp_path_factory.mktemp("jobs")
    log = open(tmp_path_factory.mktemp("log") / "serve.log", "w+")  # noqa: SIM115
    process = subprocess.Popen(
        [str(python), "-m", "skyeye.serve", "--model", "skyeye-tiny", "--port", str(port),
         "--api-key", KEY, "--allow-files", str(EXAMPLES), "--jobs-dir", str(jobs)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            request = urllib.request.Request(
                url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}
            )
            with urllib.request.urlopen(request, timeout=5) as r:
                json.loads(r.read())
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                log.seek(0)
                pytest.fail(f"skyeye.serve did not start:\n{log.read()[-3000:]}")
            time.sleep(0.5)
    yield url, jobs
    process.terminate()
    process.wait(30)
    log.close()


@pytest.fixture
def settings(qgis_app, server):
    """The plugin's settings pointing at the live server, the key in the auth manager, and its
    Processing provider registered (as the plugin's initProcessing does)."""
    from qgis.core import QgsApplication
    from skyeye.algorithms import SkyEyeProvider
    from skyeye.settings import Settings

    provider = SkyEyeProvider()
    assert QgsApplication.processingRegistry().addProvider(provider)

    s = Settings(url=server[0], timeout=120.0)
    assert s.store_key(KEY)
    s.save()
    yield s
    Settings().save()
    QgsApplication.processingRegistry().removeProvider(provider)
