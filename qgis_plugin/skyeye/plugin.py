"""The plugin object QGIS loads: the SkyEye panel, its menu entries and the Processing provider."""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtWidgets import QAction

from .algorithms import SkyEyeProvider
from .dock import SkyEyeDock, dock_area
from .settings_dialog import SettingsDialog

MENU = "&SkyEye"


class SkyEyePlugin:
    """Adds the dock (View > Panels and the plugin menu), a settings entry and the provider."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: SkyEyeProvider | None = None
        self.dock: SkyEyeDock | None = None
        self.actions: list[QAction] = []

    def initProcessing(self) -> None:  # noqa: N802 - QGIS's name
        self.provider = SkyEyeProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS's name
        self.initProcessing()
        self.dock = SkyEyeDock(self.iface)
        self.iface.addDockWidget(dock_area(), self.dock)
        show = QAction("SkyEye panel", self.iface.mainWindow())
        show.triggered.connect(self.dock.show)
        settings = QAction("SkyEye settings...", self.iface.mainWindow())
        settings.triggered.connect(self.edit_settings)
        for action in (show, settings):
            self.iface.addPluginToMenu(MENU, action)
            self.actions.append(action)

    def edit_settings(self) -> None:
        dialog = SettingsDialog(self.iface.mainWindow())
        if dialog.exec_():
            dialog.apply(
                lambda text: self.iface.messageBar().pushMessage("SkyEye", text, level=Qgis.Warning)
            )

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
        self.actions = []
        if self.dock is not None:
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
