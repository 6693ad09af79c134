"""'Start a local server' from the plugin (Debian's QGIS, offscreen): the .venv's python with
skyeye-tiny starts, the plugin's requests go to it with its key from the auth manager, a question
gets its mask layer, and unloading the plugin ends the process and frees the port; a Python
without skyeye and a model that does not load reach the message bar as one line."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from conftest import EXAMPLES, REPO, SCENE, bar_texts, wait_until

pytestmark = pytest.mark.qgis
VENV_PYTHON = str(REPO / ".venv" / "bin" / "python")


@pytest.fixture
def plugin(qgis_app, iface):
    from skyeye.settings import Settings

    import skyeye

    Settings().save()  # no remote server, no key
    loaded = skyeye.classFactory(iface)
    loaded.initGui()
    yield loaded
    if loaded.local is not None:
        loaded.unload()
    Settings().save()


def _status(url: str, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url + "/v1/models", headers=headers), timeout=10
        ) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_a_local_server_starts_answers_and_goes_with_the_plugin(qgis_app, iface, plugin):
    from qgis.core import QgsProject, QgsRasterLayer
    from skyeye.local_server import port_is_free
    from skyeye.settings import Settings

    ready: list[str] = []
    plugin.local.ready.connect(ready.append)
    assert plugin.start_local_server(VENV_PYTHON, "skyeye-tiny", str(EXAMPLES), timeout_s=240)
    assert wait_until(qgis_app, lambda: ready or not plugin.local.running(), 240), bar_texts(iface)
    assert ready, bar_texts(iface)
    url, process = ready[0], plugin.local.process
    assert wait_until(qgis_app, lambda: Settings.load().local_url == url, 10)
    settings = Settings.load()
    assert settings.server_url() == url and settings.url == "http://127.0.0.1:8000"
    # The key is random, kept in the auth manager, and the server refuses requests without it.
    assert settings.key() == plugin.local.key and len(settings.key()) >= 24
    assert _status(url, settings.key()) == 200 and _status(url, None) == 401
    assert f"ready at {url}" in bar_texts(iface)[-1]

    layer = QgsRasterLayer(str(SCENE), "berlin")
    QgsProject.instance().addMapLayer(layer)
    before = set(QgsProject.instance().mapLayers())
    dock = plugin.dock
    dock.layer_box.setLayer(layer)
    dock.question.setText("Show me where the water is with a mask.")
    thread = dock.ask()
    assert thread is not None, bar_texts(iface)
    assert wait_until(qgis_app, lambda: dock.ask_button.isEnabled(), 180)
    added = set(QgsProject.instance().mapLayers()) - before
    masks = [QgsProject.instance().mapLayer(i) for i in added]
    assert [m.name() for m in masks] == ["SkyEye berlin mask"], bar_texts(iface)
    assert masks[0].featureCount() > 0
    for layer_id in added | {layer.id()}:
        QgsProject.instance().removeMapLayer(layer_id)

    port = int(url.rsplit(":", 1)[1])
    plugin.unload()
    assert process.poll() is not None  # no orphan server
    assert port_is_free(port)
    with pytest.raises(urllib.error.URLError):  # nothing answers there any more
        _status(url, None)
    assert Settings.load().server_url() == "http://127.0.0.1:8000"  # back to the remote URL


@pytest.mark.parametrize(
    "python, model, expected",
    [
        ("/usr/bin/python3", "skyeye-tiny", "No module named 'skyeye'"),
        (VENV_PYTHON, "/nonexistent/model", "cannot load model '/nonexistent/model'"),
        ("/nonexistent/bin/python", "skyeye-tiny", "is not a Python executable"),
    ],
    ids=["python without skyeye", "model that does not load", "no such python"],
)
def test_a_local_server_that_cannot_start_says_why_in_one_line(
    qgis_app, iface, plugin, python, model, expected
):
    from skyeye.settings import Settings

    failed: list[str] = []
    plugin.local.failed.connect(failed.append)
    started = plugin.start_local_server(python, model, timeout_s=120)
    if started:
        assert wait_until(qgis_app, lambda: failed, 120)
        assert plugin.local.process is None  # ended, nothing left running
    text = bar_texts(iface)[-1]
    assert expected in text, text
    assert "\n" not in text and "Traceback" not in text
    assert Settings.load().local_url == ""
