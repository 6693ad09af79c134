"""QGIS closed while a job runs (Debian's QGIS, offscreen, live skyeye.serve): a second QGIS on
the same profile starts "Analyze whole scene" and is killed mid-job; the plugin, loaded again,
lists the job with its progress, loads its results as a layer from the panel once it finished
(and with "Load SkyEye job results"), and forgets a job the server no longer has with a message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SCENE, bar_texts, wait_until

pytestmark = pytest.mark.qgis
CHILD = Path(__file__).with_name("qgis_closed_mid_job.py")


def _start_and_kill_mid_job(profile: Path) -> None:
    """Run the child QGIS until its job reports progress, then kill it (no clean exit)."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(profile), str(SCENE)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        for line in child.stdout:
            if line.startswith("progress") or time.time() > deadline:
                break
        assert line.startswith("progress"), line
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()


def test_a_job_left_by_a_closed_qgis_is_offered_back_and_loads(
    qgis_app, qgis_profile, iface, settings
):
    import processing
    from qgis.core import QgsProject
    from skyeye.jobs import remember, remembered

    from skyeye import classFactory

    settings.shared_folder = str(SCENE.parent)  # the server reads examples/: sent as a path
    settings.save()
    remember(settings.url, "0123456789abcdef", "analyze-scene", "gone")  # deleted meanwhile
    _start_and_kill_mid_job(qgis_profile)
    jobs = remembered(settings.url)
    assert [j["name"] for j in jobs] == ["gone", "sentinel2_berlin_l1c"], jobs
    job_id = jobs[1]["id"]

    plugin = classFactory(iface)  # QGIS started again
    plugin.initGui()
    panel = plugin.dock.jobs
    assert wait_until(qgis_app, lambda: panel.items(), 20)
    text, job = panel.items()[0]
    assert job["id"] == job_id and job["state"] in ("accepted", "running", "successful"), text
    if job["state"] == "running":
        assert "running" in text and "%" in text
    assert any("no longer on the server" in t for t in bar_texts(iface)), bar_texts(iface)
    assert [j["id"] for j in remembered(settings.url)] == [job_id]  # the gone one forgotten

    # The panel refreshes itself while the job runs, until it finished on the server.
    assert wait_until(qgis_app, lambda: panel.items()[0][1]["state"] == "successful", 150)
    before = set(QgsProject.instance().mapLayers())
    layers = panel.load_selected()
    assert [layer.name() for layer in layers] == ["SkyEye sentinel2_berlin_l1c mask"]
    assert layers[0].featureCount() > 0 and set(QgsProject.instance().mapLayers()) - before == {
        layers[0].id()
    }
    assert remembered(settings.url) == [] and not panel.isVisible() and panel.items() == []

    # The same results through Processing ("Load SkyEye job results", by its id).
    result = processing.run("skyeye:load_job", {"JOB_ID": job_id, "OUTPUT": "memory:loaded"})
    loaded = result["OUTPUT"]
    loaded = loaded if not isinstance(loaded, str) else QgsProject.instance().mapLayer(loaded)
    assert loaded.featureCount() == layers[0].featureCount()
    assert result["AREA_HA"] == pytest.approx(sum(f["area_ha"] for f in loaded.getFeatures()), 0.02)
    plugin.unload()
    for layer_id in set(QgsProject.instance().mapLayers()) - before:
        QgsProject.instance().removeMapLayer(layer_id)


def test_loading_a_job_the_server_no_longer_has_is_one_line(qgis_app, settings):
    import processing
    from qgis.core import QgsProcessingException
    from skyeye.jobs import remember, remembered

    remember(settings.url, "fedcba9876543210", "ask", "gone")
    with pytest.raises(QgsProcessingException, match="no longer on the server"):
        processing.run("skyeye:load_job", {"JOB_ID": "", "OUTPUT": "memory:none"})
    assert remembered(settings.url) == []
