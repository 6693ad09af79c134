"""The screenshot of docs/qgis.md: QGIS's map canvas with the bundled Sentinel-2 scene, the SkyEye
panel answering "Show me where the water is with a mask." and the mask layer over the scene.

Run with the system python3 that has QGIS (scripts/setup_qgis.sh), offscreen or under Xvfb:

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/qgis_screenshot.py [docs/img/qgis_dock.png]

It starts `python -m skyeye.serve` (skyeye-tiny, from .venv) on a free port, asks through the
plugin's dock as a user would, and saves the window (written under a temporary name, renamed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "examples" / "sentinel2_berlin_l1c.tif"
QUESTION = "Show me where the water is with a mask."
KEY = "screenshot-key"


def _serve(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "skyeye.serve", "--model", "skyeye-tiny",
         "--port", str(port), "--api-key", KEY],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {KEY}"}
            )
            urllib.request.urlopen(request, timeout=5).close()
            return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("error: skyeye.serve did not start (run make setup first)")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0]) if args else REPO / "docs" / "img" / "qgis_dock.png"
    sys.path.insert(0, str(REPO / "qgis_plugin"))
    from qgis.core import (
        QgsApplication,
        QgsContrastEnhancement,
        QgsMultiBandColorRenderer,
        QgsProject,
        QgsRasterLayer,
    )
    from qgis.gui import QgsMapCanvas, QgsMessageBar
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QMainWindow, QVBoxLayout, QWidget

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = _serve(port)
    profile = tempfile.mkdtemp(prefix="skyeye-qgis-profile-")  # never the user's own profile
    app = QgsApplication([], True, profile)
    app.initQgis()
    try:
        from skyeye.dock import SkyEyeDock
        from skyeye.settings import Settings

        QgsApplication.authManager().setMasterPassword("screenshot", True)
        settings = Settings(url=f"http://127.0.0.1:{port}")
        settings.store_key(KEY)
        settings.save()

        window = QMainWindow()
        window.setWindowTitle("QGIS - SkyEye")
        central = QWidget()
        column = QVBoxLayout(central)
        bar, canvas = QgsMessageBar(), QgsMapCanvas()
        column.addWidget(bar)
        column.addWidget(canvas)
        window.setCentralWidget(central)

        class Iface:  # what the dock needs of QGIS's interface
            def messageBar(self):  # noqa: N802
                return bar

            def mapCanvas(self):  # noqa: N802
                return canvas

        scene = QgsRasterLayer(str(SCENE), "Sentinel-2 Berlin (L1C)")
        renderer = QgsMultiBandColorRenderer(scene.dataProvider(), 4, 3, 2)  # B04 B03 B02
        scene.setRenderer(renderer)
        for setter, band in ((renderer.setRedContrastEnhancement, 4),
                             (renderer.setGreenContrastEnhancement, 3),
                             (renderer.setBlueContrastEnhancement, 2)):  # fmt: skip
            stats = scene.dataProvider().cumulativeCut(band, 0.02, 0.98)
            enhancement = QgsContrastEnhancement(scene.dataProvider().dataType(band))
            enhancement.setContrastEnhancementAlgorithm(
                QgsContrastEnhancement.StretchToMinimumMaximum
            )
            enhancement.setMinimumValue(stats[0])
            enhancement.setMaximumValue(stats[1])
            setter(enhancement)
        QgsProject.instance().addMapLayer(scene)
        dock = SkyEyeDock(Iface())
        window.addDockWidget(Qt.RightDockWidgetArea, dock)
        dock.layer_box.setLayer(scene)
        dock.question.setText(QUESTION)
        window.resize(1280, 760)
        window.show()
        thread = dock.ask()
        if thread is None:
            raise SystemExit("error: the dock could not ask (see the message bar)")
        deadline = time.time() + 300
        while (thread.isRunning() or not thread.isFinished()) and time.time() < deadline:
            app.processEvents()
            time.sleep(0.02)
        for _ in range(50):
            app.processEvents()
        layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr is not scene]
        canvas.setDestinationCrs(scene.crs())
        canvas.setLayers([*layers, scene])
        canvas.setExtent(scene.extent())
        canvas.refreshAllLayers()
        for _ in range(100):
            app.processEvents()
            time.sleep(0.02)
        canvas.waitWhileRendering()
        app.processEvents()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{target.name}")
        if not window.grab().save(str(tmp), "PNG"):
            raise SystemExit(f"error: could not write {target}")
        os.replace(tmp, target)
        print(f"{target}: {dock.answer.toPlainText().splitlines()[-1]}")
    finally:
        server.terminate()
        server.wait(30)
        app.exitQgis()
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
