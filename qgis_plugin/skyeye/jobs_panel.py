"""The panel's Jobs list: the jobs this plugin started on the server in use and has not loaded
yet (`jobs`), e.g. ones still running when QGIS was closed. Finished ones load as layers
(**Load results**); running ones show their progress, refreshed every few seconds; ones the
server no longer has, or that failed, are forgotten with a message. Hidden when there are none."""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .client import SkyEyeClientError
from .jobs import forget, remembered, result_layers, status_or_none
from .settings import Settings

REFRESH_MS = 3000
STATUS_TIMEOUT_S = 5.0


class JobsPanel(QWidget):
    """Remembered jobs of the server in use, with their state; ``iface`` for the message bar."""

    def __init__(self, iface: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.iface = iface
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(QLabel("Jobs started earlier"))
        self.list = QListWidget()
        self.list.setMaximumHeight(90)
        box.addWidget(self.list)
        row = QHBoxLayout()
        self.load_button = QPushButton("Load results")
        self.load_button.clicked.connect(self.load_selected)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        row.addWidget(self.load_button)
        row.addWidget(refresh)
        box.addLayout(row)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.setVisible(False)

    def _message(self, text: str, level: Any = Qgis.Info) -> None:
        self.iface.messageBar().pushMessage("SkyEye", text, level=level, duration=10)

    def refresh(self) -> None:
        """Ask the server about each remembered job and show what it says."""
        settings = Settings.load()
        url = settings.server_url()
        client = settings.client()
        client.timeout = min(client.timeout, STATUS_TIMEOUT_S)
        self.list.clear()
        running = False
        for job in remembered(url):
            label = f"{job.get('name') or job['id']} ({job.get('process')})"
            try:
                status = status_or_none(client, job["id"])
            except SkyEyeClientError as err:
                self._add(f"{label}: unknown, {err}", job, "unknown")
                break  # the server is unreachable or refuses: no use asking for the others
            if status is None:
                forget(url, job["id"])
                self._message(f"job {label} is no longer on the server (deleted or expired)")
                continue
            state = status["status"]
            if state in ("failed", "dismissed"):
                forget(url, job["id"])
                self._message(f"job {label} {state}: {status.get('message')}", Qgis.Warning)
                continue
            if state == "successful":
                self._add(f"{label}: finished, ready to load", job, state)
            else:
                running = True
                percent = float(status.get("progress") or 0)
                self._add(
                    f"{label}: {state} {percent:.0f} % {status.get('message') or ''}", job, state
                )
        self.setVisible(self.list.count() > 0)
        if running:
            self.timer.start()
        else:
            self.timer.stop()

    def _add(self, text: str, job: dict[str, Any], state: str) -> None:
        item = QListWidgetItem(text.strip())
        item.setData(Qt.UserRole, {**job, "state": state})
        self.list.addItem(item)

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        """(text, job with its "state") of each row shown."""
        rows = []
        for k in range(self.list.count()):
            item = self.list.item(k)
            rows.append((item.text(), item.data(Qt.UserRole)))
        return rows

    def load_selected(self) -> list[QgsVectorLayer]:
        """Load the selected job (else the first finished one) as layers; returns them."""
        chosen = [i.data(Qt.UserRole) for i in self.list.selectedItems()]
        finished = [job for _, job in self.items() if job["state"] == "successful"]
        if not (chosen or finished):
            self._message("no finished job to load yet", Qgis.Warning)
            return []
        return self.load((chosen or finished)[0]["id"])

    def load(self, job_id: str) -> list[QgsVectorLayer]:
        """A finished job's masks and boxes added to the project (all of them, or none and a
        one-line message); the job is then forgotten."""
        settings = Settings.load()
        url = settings.server_url()
        job = next((j for j in remembered(url) if j["id"] == job_id), {"name": job_id})
        try:
            results, layers = result_layers(settings.client(), job_id, f"SkyEye {job['name']}")
        except SkyEyeClientError as err:
            self._message(str(err), Qgis.Critical)
            return []
        for layer in layers:
            QgsProject.instance().addMapLayer(layer)
        forget(url, job_id)
        answer = " ".join(str(results.get("answer") or "").split())
        self._message(f"job {job['name']} loaded ({len(layers)} layer(s)): {answer}"[:300])
        self.refresh()
        return layers
