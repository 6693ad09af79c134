"""The SkyEye panel: chat about the active raster layer (the whole layer, the map canvas extent or
a drawn rectangle). The answer streams in; its masks and boxes become layers; the answer text
is kept per layer; jobs started earlier and not loaded yet are listed below (`jobs_panel`).
Every error goes to the message bar as one line."""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis, QgsMapLayerProxyModel, QgsRectangle
from qgis.gui import QgsMapLayerComboBox, QgsMapToolExtent
from qgis.PyQt.QtCore import Qt, QThread, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from .client import SkyEyeClient, SkyEyeClientError
from .jobs_panel import JobsPanel
from .layers import add_answer_layers
from .rasters import image_input
from .settings import Settings

REGIONS = ("Whole layer", "Map canvas extent", "Drawn rectangle")


class AnswerThread(QThread):
    """One streamed answer off the GUI thread: ``piece`` per text chunk, then ``done`` with the
    `skyeye` extension, or ``failed`` with a one-line message."""

    piece = pyqtSignal(str)
    done = pyqtSignal(dict)
    failed = pyqtSignal(str)

    def __init__(self, client: SkyEyeClient, messages: list[dict[str, Any]]) -> None:
        super().__init__()
        self.client, self.messages = client, messages

    def run(self) -> None:
        extension: dict[str, Any] = {}
        try:
            for delta in self.client.chat_stream(self.messages):
                if delta.get("content"):
                    self.piece.emit(delta["content"])
                if "skyeye" in delta:
                    extension = delta["skyeye"] or {}
        except SkyEyeClientError as err:
            self.failed.emit(str(err))
            return
        except Exception as err:  # noqa: BLE001 - a thread's error must reach the message bar
            self.failed.emit(f"SkyEye: unexpected error ({type(err).__name__}: {err})")
            return
        self.done.emit(extension)


class SkyEyeDock(QDockWidget):
    """The chat panel; ``iface`` gives the map canvas and the message bar."""

    def __init__(self, iface: Any, parent: QWidget | None = None) -> None:
        super().__init__("SkyEye", parent)
        self.setObjectName("SkyEyeDock")
        self.iface = iface
        self.answers: dict[str, str] = {}  # layer id -> the conversation's text
        self.drawn: QgsRectangle | None = None
        self.thread: AnswerThread | None = None
        self._tool: QgsMapToolExtent | None = None
        body = QWidget()
        box = QVBoxLayout(body)
        self.layer_box = QgsMapLayerComboBox()
        self.layer_box.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_box.layerChanged.connect(self._show_layer)
        box.addWidget(self.layer_box)
        row = QHBoxLayout()
        self.region = QComboBox()
        self.region.addItems(REGIONS)
        self.draw_button = QPushButton("Draw")
        self.draw_button.clicked.connect(self._draw)
        row.addWidget(self.region)
        row.addWidget(self.draw_button)
        box.addLayout(row)
        self.answer = QTextBrowser()
        box.addWidget(self.answer)
        row = QHBoxLayout()
        self.question = QLineEdit()
        self.question.setPlaceholderText("Ask about the layer, e.g. Where is the water?")
        self.question.returnPressed.connect(self.ask)
        self.ask_button = QPushButton("Ask")
        self.ask_button.clicked.connect(self.ask)
        row.addWidget(self.question)
        row.addWidget(self.ask_button)
        box.addLayout(row)
        self.jobs = JobsPanel(iface)  # hidden while no job waits to be loaded
        box.addWidget(self.jobs)
        self.setWidget(body)

    # ------------------------------------------------------------------ helpers
    def error(self, message: str) -> None:
        self.iface.messageBar().pushMessage("SkyEye", message, level=Qgis.Critical, duration=10)
        self.ask_button.setEnabled(True)

    def _show_layer(self, layer: Any) -> None:
        self.answer.setPlainText(self.answers.get(layer.id(), "") if layer else "")

    def _draw(self) -> None:
        canvas = self.iface.mapCanvas()
        self._tool = QgsMapToolExtent(canvas)
        self._tool.extentChanged.connect(self._drawn)
        canvas.setMapTool(self._tool)

    def _drawn(self, extent: QgsRectangle) -> None:
        self.drawn = extent
        self.region.setCurrentIndex(2)
        self.iface.mapCanvas().unsetMapTool(self._tool)

    def _area(self) -> tuple[QgsRectangle | None, Any]:
        canvas = self.iface.mapCanvas()
        crs = canvas.mapSettings().destinationCrs()
        choice = self.region.currentIndex()
        if choice == 1:
            return canvas.extent(), crs
        if choice == 2:
            if self.drawn is None:
                raise SkyEyeClientError("no rectangle drawn yet: press Draw and drag on the map")
            return self.drawn, crs
        return None, None

    # ------------------------------------------------------------------ asking
    def ask(self) -> AnswerThread | None:
        """Ask the question about the chosen layer and area; the answer streams in. Returns the
        answering thread (None when the request could not be made: see the message bar)."""
        question = self.question.text().strip()
        layer = self.layer_box.currentLayer()
        try:
            if not question:
                raise SkyEyeClientError("type a question first")
            settings = Settings.load()
            extent, crs = self._area()
            image = image_input(layer, extent, crs, "")  # the chat takes images inline
            client = settings.client()
        except SkyEyeClientError as err:
            self.error(str(err))
            return None
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image}},
                    {"type": "text", "text": question},
                ],
            }
        ]
        key = layer.id()
        self.answers[key] = self.answers.get(key, "") + f"\n\nYou: {question}\nSkyEye: "
        self.answer.setPlainText(self.answers[key].strip())
        self.ask_button.setEnabled(False)
        self.thread = AnswerThread(client, messages)
        self.thread.piece.connect(lambda text: self._piece(key, text))
        self.thread.done.connect(lambda ext: self._done(key, layer.name(), ext))
        self.thread.failed.connect(self.error)
        self.thread.start()
        return self.thread

    def _piece(self, key: str, text: str) -> None:
        self.answers[key] += text
        if self.layer_box.currentLayer() is not None and self.layer_box.currentLayer().id() == key:
            self.answer.setPlainText(self.answers[key].strip())

    def _done(self, key: str, name: str, extension: dict[str, Any]) -> None:
        self.ask_button.setEnabled(True)
        try:
            layers = add_answer_layers(extension, f"SkyEye {name}")
        except SkyEyeClientError as err:
            self.error(str(err))
            return
        total = sum(
            (m.get("area_m2") or 0.0) for m in extension.get("masks", []) if m.get("geojson")
        )
        if layers and total:
            self._piece(key, f"\n(mask: {total / 1e4:,.2f} ha, layer '{layers[0].name()}')")

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        if self.thread is not None and self.thread.isRunning():
            self.thread.wait(2000)
        super().closeEvent(event)


def dock_area() -> Qt.DockWidgetArea:
    return Qt.RightDockWidgetArea
