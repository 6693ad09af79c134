"""The settings dialog: server URL, API key (into QGIS's auth manager), timeout, shared folder;
and the local server (a Python environment with skyeye, a model, an allowed folder) with a
button that starts it (or stops the one running)."""

from __future__ import annotations

from typing import Any

from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLineEdit,
    QPushButton,
    QWidget,
)

from .settings import Settings


class SettingsDialog(QDialog):
    """Edit the `Settings`; the key field shows nothing stored (type a new one to change it).
    After ``exec_()``, ``start_local`` / ``stop_local`` say whether the user asked to start or
    stop the local server (`local`: the plugin's `LocalServer`, None outside the plugin)."""

    def __init__(self, parent: QWidget | None = None, local: Any = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("SkyEye settings")
        self.settings = Settings.load()
        self.start_local = self.stop_local = False
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

        group = QGroupBox("Or start a local server (no remote one needed)")
        local_form = QFormLayout(group)
        self.python = QLineEdit(self.settings.local_python)
        self.python.setPlaceholderText(
            "python of an environment with skyeye, e.g. .venv/bin/python"
        )
        self.model = QLineEdit(self.settings.local_model)
        self.folder = QLineEdit(self.settings.local_folder)
        self.folder.setPlaceholderText("optional: a folder the local server may read")
        running = local is not None and local.running()
        self.local_button = QPushButton(
            f"Stop the local server ({local.url})" if running else "Start the local server"
        )
        self.local_button.setEnabled(local is not None)
        self.local_button.clicked.connect(lambda: self._local(not running))
        local_form.addRow("Python", self.python)
        local_form.addRow("Model", self.model)
        local_form.addRow("Allowed folder", self.folder)
        local_form.addRow(self.local_button)
        form.addRow(group)

        buttons = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _local(self, start: bool) -> None:
        self.start_local, self.stop_local = start, not start
        self.accept()

    def apply(self, message: Any) -> None:
        """Save; ``message(text)`` reports a key the auth manager could not store."""
        self.settings = Settings.load()  # the local server's state may have changed meanwhile
        self.settings.url = self.url.text().strip()
        self.settings.timeout = float(self.timeout.value())
        self.settings.shared_folder = self.shared.text().strip()
        self.settings.local_python = self.python.text().strip()
        self.settings.local_model = self.model.text().strip() or "skyeye-tiny"
        self.settings.local_folder = self.folder.text().strip()
        if self.key.text() and not self.settings.store_key(self.key.text()):
            message(
                "the API key could not be stored in the QGIS auth manager: set its master "
                "password (Settings > Options > Authentication) and save again"
            )
        self.settings.save()
