"""The QGIS plugin in Debian's real QGIS (offscreen) against a live skyeye.serve with skyeye-tiny:
it loads; "Ask SkyEye" adds polygons whose area_ha sums to the answer's area; "Analyze whole
scene" runs as a job with progress and its layers load; cancel removes the job; a wrong key and
a server that is down reach the message bar as one line."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from conftest import KEY, SCENE

pytestmark = pytest.mark.qgis
WATER = "Show me where the water is with a mask."


def _wait(app, thread, timeout: float = 180.0) -> None:
    """Let a dock's answer thread finish and its queued signals reach the GUI thread."""
    deadline = time.time() + timeout
    while (thread.isRunning() or not thread.isFinished()) and time.time() < deadline:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        app.processEvents()


class Feedback:
    """A `QgsProcessingFeedback` recording progress; it cancels once progress passes ``cancel_at``."""

    def __new__(cls, cancel_at: float | None = None):
        from qgis.core import QgsProcessingFeedback

        class Recording(QgsProcessingFeedback):
            def __init__(self) -> None:
                super().__init__()
                self.seen: list[float] = []
                self.errors: list[str] = []
                self.progressChanged.connect(self._progress)

            def _progress(self, value: float) -> None:
                self.seen.append(value)
                if cancel_at is not None and value >= cancel_at:
                    self.cancel()

            def reportError(self, error, fatalError=False):  # noqa: N802, N803
                self.errors.append(error)
                super().reportError(error, fatalError)

        return Recording()


def _jobs(url: str) -> list[dict]:
    request = urllib.request.Request(url + "/jobs", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())["jobs"]


def test_the_plugin_loads_and_unloads(iface):
    from qgis.core import QgsApplication

    import skyeye

    plugin = skyeye.classFactory(iface)
    plugin.initGui()
    provider = QgsApplication.processingRegistry().providerById("skyeye")
    assert {a.id() for a in provider.algorithms()} == {
        "skyeye:ask",
        "skyeye:analyze_scene",
        "skyeye:load_job",
    }
    assert plugin.dock is not None and len(iface.menu) == 2
    plugin.unload()
    assert QgsApplication.processingRegistry().providerById("skyeye") is None
    assert iface.menu == []


def test_ask_skyeye_adds_polygons_whose_area_is_the_answers(qgis_app, settings):
    import processing
    from qgis.core import QgsDistanceArea, QgsProject, QgsRasterLayer

    layer = QgsRasterLayer(str(SCENE), "berlin")
    assert layer.isValid()
    feedback = Feedback()
    result = processing.run(
        "skyeye:ask",
        {"INPUT": layer, "QUESTION": WATER, "OUTPUT": "memory:water"},
        feedback=feedback,
    )
    polygons = result["OUTPUT"]
    polygons = (
        polygons if not isinstance(polygons, str) else QgsProject.instance().mapLayer(polygons)
    )
    features = list(polygons.getFeatures())
    assert features, result["ANSWER"]  # skyeye-tiny finds the Berlin lakes
    assert polygons.fields().names() == ["phrase", "area_ha"]
    total = sum(f["area_ha"] for f in features)
    assert total == pytest.approx(result["AREA_HA"], rel=1e-6)
    # The polygons' own ground area agrees with the measured one (pixels vs outlines).
    geodesic = QgsDistanceArea()
    geodesic.setEllipsoid("WGS84")
    drawn = sum(geodesic.measureArea(f.geometry()) for f in features) / 1e4
    assert drawn == pytest.approx(total, rel=0.1)
    assert all(f["phrase"] for f in features)
    assert feedback.seen and max(feedback.seen) >= 90


def test_analyze_whole_scene_runs_as_a_job_to_completion(qgis_app, settings, tmp_path):
    import processing
    from qgis.core import QgsProject, QgsRasterLayer
    from skyeye.settings import Settings

    settings.shared_folder = str(SCENE.parent)  # the server reads examples/: sent as a path
    settings.save()
    feedback = Feedback()
    mask = str(tmp_path / "mask.tif")
    result = processing.run(
        "skyeye:analyze_scene",
        {"INPUT": str(SCENE), "PROMPT": WATER, "WINDOW": 256, "OVERLAP": 32, "BATCH": 2,
         "OUTPUT": "memory:scene", "MASK": mask},
        feedback=feedback,
    )  # fmt: skip
    assert Settings.load().shared_folder == str(SCENE.parent)
    assert 0 < min(feedback.seen) < 100 and max(feedback.seen) == 100, feedback.seen
    polygons = result["OUTPUT"]
    polygons = (
        polygons if not isinstance(polygons, str) else QgsProject.instance().mapLayer(polygons)
    )
    assert polygons.isValid() and polygons.featureCount() > 0
    assert sum(f["area_ha"] for f in polygons.getFeatures()) == pytest.approx(
        result["AREA_HA"], rel=0.02
    )
    raster = QgsRasterLayer(result["MASK"], "mask")
    assert raster.isValid() and raster.width() == 512


def test_cancel_deletes_the_job_on_the_server(qgis_app, settings):
    import processing
    from qgis.core import QgsProcessingException

    before = {j["jobID"] for j in _jobs(settings.url)}
    feedback = Feedback(cancel_at=1)
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run(
            "skyeye:analyze_scene",
            {"INPUT": str(SCENE), "PROMPT": WATER, "WINDOW": 64, "OVERLAP": 0, "BATCH": 1,
             "OUTPUT": "memory:cancelled"},
            feedback=feedback,
        )  # fmt: skip
    assert {j["jobID"] for j in _jobs(settings.url)} == before


@pytest.mark.parametrize("case", ["wrong key", "server down"])
def test_errors_reach_the_message_bar_as_one_line(qgis_app, iface, settings, case):
    from qgis.core import QgsProject, QgsRasterLayer
    from skyeye.dock import SkyEyeDock

    if case == "wrong key":
        assert settings.store_key("not-the-key")
        expected = "refused the API key"
    else:
        settings.url = "http://127.0.0.1:9"  # nothing listens on the discard port
        expected = "cannot reach the SkyEye server"
    settings.save()
    layer = QgsRasterLayer(str(SCENE), "berlin")
    QgsProject.instance().addMapLayer(layer)
    before = set(QgsProject.instance().mapLayers())
    dock = SkyEyeDock(iface)
    dock.layer_box.setLayer(layer)
    dock.question.setText(WATER)
    thread = dock.ask()
    assert thread is not None
    _wait(qgis_app, thread)
    item = iface.messageBar().currentItem()
    assert item is not None and expected in item.text(), item and item.text()
    assert "\n" not in item.text() and "Traceback" not in item.text()
    assert set(QgsProject.instance().mapLayers()) == before  # no half-written layer
    QgsProject.instance().removeMapLayer(layer.id())


def test_a_vector_layer_is_refused_in_the_message_bar(qgis_app, iface, settings):
    from qgis.core import QgsProject, QgsVectorLayer
    from skyeye.dock import SkyEyeDock

    vector = QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
    QgsProject.instance().addMapLayer(vector)
    dock = SkyEyeDock(iface)
    dock.layer_box.setAllowEmptyLayer(True)
    dock.layer_box.setLayer(None)
    dock.question.setText(WATER)
    assert dock.ask() is None
    assert "no layer chosen" in iface.messageBar().currentItem().text()
    from skyeye.client import SkyEyeClientError
    from skyeye.rasters import layer_file

    with pytest.raises(SkyEyeClientError, match="not a raster"):
        layer_file(vector)
    QgsProject.instance().removeMapLayer(vector.id())


def test_the_dock_streams_an_answer_and_adds_the_mask_layer(qgis_app, iface, settings):
    from qgis.core import QgsProject, QgsRasterLayer
    from skyeye.dock import SkyEyeDock

    layer = QgsRasterLayer(str(SCENE), "berlin")
    QgsProject.instance().addMapLayer(layer)
    before = set(QgsProject.instance().mapLayers())
    dock = SkyEyeDock(iface)
    dock.layer_box.setLayer(layer)
    dock.question.setText(WATER)
    pieces: list[str] = []
    thread = dock.ask()
    thread.piece.connect(pieces.append)
    _wait(qgis_app, thread)
    item = iface.messageBar().currentItem()
    assert item is None, item.text()
    # Streamed chunks (text after a [SEG] arrives once its mask is measured: one chunk here).
    assert pieces and "".join(pieces) in dock.answers[layer.id()]
    added = [
        QgsProject.instance().mapLayer(i) for i in set(QgsProject.instance().mapLayers()) - before
    ]
    masks = [a for a in added if a.name().endswith("mask")]
    assert len(masks) == 1 and masks[0].featureCount() > 0
    assert all(f["area_ha"] > 0 for f in masks[0].getFeatures())
    assert "ha" in dock.answers[layer.id()] and dock.answer.toPlainText().startswith("You:")
    for layer_id in set(QgsProject.instance().mapLayers()) - before | {layer.id()}:
        QgsProject.instance().removeMapLayer(layer_id)


def test_make_qgis_plugin_builds_the_zip_qgis_installs(tmp_path):
    import subprocess
    import zipfile

    from conftest import REPO

    target = tmp_path / "plugin.zip"
    subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "scripts/build_qgis_plugin.py", str(target)],
        cwd=REPO, check=True, capture_output=True,
    )  # fmt: skip
    names = zipfile.ZipFile(target).namelist()
    assert "skyeye/metadata.txt" in names and "skyeye/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n]
    metadata = zipfile.ZipFile(target).read("skyeye/metadata.txt").decode()
    assert "qgisMinimumVersion=3.22" in metadata and "hasProcessingProvider=yes" in metadata
