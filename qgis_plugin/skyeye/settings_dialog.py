"""The settings dialog: server URL, API key (into QGIS's auth manager), timeout, shared folder."""

from __future__ import annotations

from typing import Any

from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QWidget,
)

from .settings import Settings


class SettingsDialog(QDialog):
    """Edit the `Settings`; the key field shows nothing stored (type a new one to change it)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("SkyEye settings")
        self.settings = Settings.load()
        form = QFormLayout(self)
        self.url = QLineEdit(self.settings.url)
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.Password)
        self.key.setPlaceholderText(
            "stored in the QGIS auth manager" if self.settings.authcfg else ""
        )
        self.timeout = QDoubleSpinBox()
        self.timeout.setRange(1, 3600)
        self.timeout.setValue(self.settings.timeout)
        self.shared = QLineEdit(self.settings.shared_folder)
        self.shared.setPlaceholderText("a folder the server reads at the same path (--allow-files)")
        form.addRow("Server URL", self.url)
        form.addRow("API key", self.key)
        form.addRow("Timeout (s)", self.timeout)
        form.addRow("Shared folder", self.shared)
        buttons = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def apply(self, message: Any) -> None:
        """Save; ``message(text)`` reports a key the auth manager could not store."""
        self.settings.url = self.url.text().strip()
        self.settings.timeout = float(self.timeout.value())
        self.settings.shared_folder = self.shared.text().strip()
        if self.key.text() and not self.settings.store_key(self.key.text()):
            message(
                "the API key could not be stored in the QGIS auth manager: set its master "
                "password (Settings > Options > Authentication) and save again"
            )
        self.settings.save()
