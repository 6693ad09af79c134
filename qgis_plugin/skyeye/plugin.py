"""The plugin object QGIS loads: the SkyEye panel, its menu entries, the Processing provider and,
when the user starts one, the local SkyEye server (stopped when the plugin unloads or QGIS
quits)."""

from __future__ import annotations

import os
from typing import Any

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QAction

from .algorithms import SkyEyeProvider
from .client import SkyEyeClientError
from .dock import SkyEyeDock, dock_area
from .local_server import LocalServer
from .settings import Settings
from .settings_dialog import SettingsDialog

MENU = "&SkyEye"
#: How long the local server may take to load its model before it counts as failed.
LOCAL_START_TIMEOUT_S = 600.0


class SkyEyePlugin:
    """Adds the dock (View > Panels and the plugin menu), a settings entry and the provider."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: SkyEyeProvider | None = None
        self.dock: SkyEyeDock | None = None
        self.actions: list[QAction] = []
        self.local: LocalServer | None = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS's name
        self.provider = SkyEyeProvider()
        if not QgsApplication.processingRegistry().addProvider(self.provider):
            self.provider = None  # one "skyeye" is there already (QGIS deleted this one)

    def initGui(self) -> None:  # noqa: N802 - QGIS's name
        settings = Settings.load()
        if settings.local_url:  # left by a QGIS that ended without stopping its server
            settings.local_url = ""
            settings.save()
        self.initProcessing()
        self.dock = SkyEyeDock(self.iface)
        self.iface.addDockWidget(dock_area(), self.dock)
        show = QAction("SkyEye panel", self.iface.mainWindow())
        show.triggered.connect(self.dock.show)
        edit = QAction("SkyEye settings...", self.iface.mainWindow())
        edit.triggered.connect(self.edit_settings)
        for action in (show, edit):
            self.iface.addPluginToMenu(MENU, action)
            self.actions.append(action)
        self.local = LocalServer()
        self.local.ready.connect(self._local_ready)
        self.local.failed.connect(lambda text: self.message(text, Qgis.Critical))
        QgsApplication.instance().aboutToQuit.connect(self.stop_local_server)
        QTimer.singleShot(0, self.refresh_jobs)  # jobs left by a QGIS closed meanwhile

    def refresh_jobs(self) -> None:
        if self.dock is not None:  # not unloaded meanwhile
            self.dock.jobs.refresh()

    def message(self, text: str, level: Any = Qgis.Warning) -> None:
        self.iface.messageBar().pushMessage("SkyEye", text, level=level, duration=10)

    def edit_settings(self) -> None:
        dialog = SettingsDialog(self.iface.mainWindow(), self.local)
        if dialog.exec_():
            dialog.apply(self.message)
            if dialog.start_local:
                s = Settings.load()
                self.start_local_server(s.local_python, s.local_model, s.local_folder)
            elif dialog.stop_local:
                self.stop_local_server()

    # ------------------------------------------------------------------ the local server
    def start_local_server(
        self, python: str, model: str, folder: str = "", timeout_s: float = LOCAL_START_TIMEOUT_S
    ) -> bool:
        """Start ``python -m skyeye.serve`` here; requests go to it once it answers (the
        message bar says so, or why it did not start). False when it could not even start."""
        assert self.local is not None
        settings = Settings.load()
        settings.local_python, settings.local_model, settings.local_folder = python, model, folder
        settings.save()
        jobs_dir = os.path.join(QgsApplication.qgisSettingsDirPath(), "skyeye-jobs")
        try:
            self.local.start(python, model, folder, jobs_dir, settings.local_port, timeout_s)
        except SkyEyeClientError as err:
            self.message(str(err), Qgis.Critical)
            return False
        self.message(f"starting the local SkyEye server with {model}...", Qgis.Info)
        return True

    def _local_ready(self, url: str) -> None:
        assert self.local is not None
        settings = Settings.load()
        if not settings.store_key(self.local.key, local=True):
            self.local.stop()
            self.message(
                "the local server's key could not be stored in the QGIS auth manager: set its "
                "master password (Settings > Options > Authentication) and start it again",
                Qgis.Critical,
            )
            return
        settings.local_url, settings.local_port = url, int(url.rsplit(":", 1)[1])
        settings.save()
        self.message(f"local SkyEye server ready at {url} ({self.local.model})", Qgis.Success)
        self.refresh_jobs()

    def stop_local_server(self) -> None:
        """Stop the local server (if one runs); requests go to the remote URL again."""
        if self.local is not None:
            self.local.stop()
        settings = Settings.load()
        if settings.local_url:
            settings.local_url = ""
            settings.save()

    def unload(self) -> None:
        self.stop_local_server()
        try:
            QgsApplication.instance().aboutToQuit.disconnect(self.stop_local_server)
        except TypeError:
            pass  # not connected
        self.local = None
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
        self.actions = []
        if self.dock is not None:
            self.dock.jobs.timer.stop()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
