"""The jobs API (OGC API - Processes) of `skyeye.serve`: a scene job survives a restart and
resumes from its finished windows, DELETE stops a job and frees its disk, the limits answer 429,
files outside --allow-files 403, a wrong key 401; an `ask` job's results and files."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from serve_testing import API_KEY
from skyeye_testing import REPO, segmenting_chat, write_big_scene

from skyeye.serve.job_run import folder_bytes

FORCED = "<p> the lake </p> [SEG]"
SCENE_OPTIONS = {"window": 48, "overlap": 16, "batch": 4, "force_answer": FORCED}


class SlowSession:
    """The tiny random SkyEye scripted to end its answers with [SEG] (`segmenting_chat`); each
    model forward sleeps ``delay`` seconds, so a scene job takes long enough to be stopped half
    way; `factory` waits for ``release`` (a test holds the worker there to fill the queue)."""

    def __init__(self, llm_dir: Path) -> None:
        session = segmenting_chat(llm_dir)
        model = session.model
        self.delay = 0.0
        self.release = threading.Event()
        self.release.set()
        original = model.forward

        def slow_forward(*args, **kwargs):
            time.sleep(self.delay)
            return original(*args, **kwargs)

        model.forward = slow_forward
        self.session = session

    def factory(self):
        self.release.wait(60)
        return self.session


@pytest.fixture(scope="module")
def slow(tiny_llm_dir) -> SlowSession:
    return SlowSession(tiny_llm_dir)


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("allowed")
    write_big_scene(root / "big.tif")
    return root


@contextlib.contextmanager
def client(slow: SlowSession, root: Path, jobs: Path, key: str = API_KEY, **config):
    """A `TestClient` of an app whose jobs run on ``slow``; the worker starts and stops with it."""
    from fastapi.testclient import TestClient

    from skyeye.serve import ServeConfig, create_app

    settings = ServeConfig(api_key=API_KEY, allow_files=root, jobs_dir=jobs, **config)
    app = create_app(settings, slow.session, job_model=slow.factory)
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(app, headers=headers, raise_server_exceptions=False) as c:
        yield c


def _submit(c, process: str, **inputs):
    return c.post(f"/processes/{process}/execution", json={"inputs": inputs})


def _scene(c, image="big.tif"):
    r = _submit(c, "analyze-scene", image=image, prompt="segment the lake", **SCENE_OPTIONS)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/jobs/{r.json()['jobID']}"
    return r.json()["jobID"]


def _wait(c, job_id: str, until, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = c.get(f"/jobs/{job_id}").json()
        if until(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached the state wanted: {status}")


def _geotiff_url() -> str:
    """A 64 x 64 crop of the bundled Sentinel-2 scene as a GeoTIFF data URL."""
    with rasterio.open(REPO / "examples" / "sentinel2_berlin_l1c.tif") as src:
        window = rasterio.windows.Window(100, 100, 64, 64)
        data = src.read(window=window)
        profile = src.profile | {
            "width": 64,
            "height": 64,
            "transform": src.window_transform(window),
            "tiled": False,
        }
        descriptions = src.descriptions
    for key in ("blockxsize", "blockysize"):
        profile.pop(key, None)
    buffer = io.BytesIO()
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
            dst.descriptions = descriptions
        buffer.write(mem.read())
    return "data:image/tiff;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_scene_job_stopped_half_way_resumes_after_a_restart(slow, scene_root, tmp_path):
    jobs = tmp_path / "jobs"
    slow.delay = 0.03
    try:
        with client(slow, scene_root, jobs) as c:
            job_id = _scene(c)
            _wait(c, job_id, lambda s: s["status"] == "running" and (s["progress"] or 0) >= 10)
        on_disk = json.loads((jobs / job_id / "job.json").read_text())
        assert on_disk["status"] == "running", on_disk  # stopped, not failed
        slow.delay = 0.0
        with client(slow, scene_root, jobs) as c:
            status = _wait(c, job_id, lambda s: s["status"] in ("successful", "failed"))
            assert status["status"] == "successful", status
            assert status["progress"] == 100
            results = c.get(f"/jobs/{job_id}/results").json()
            windows = results["windows"]
            # The restarted run reused the windows finished before the stop.
            assert 0 < windows["run_now"] < windows["total"], windows
            assert results["answer"] == results["result"]["answer"]
            assert results["result"]["scene"]["source"] == "inputs.image"  # no server path
            hrefs = {link["title"]: link["href"] for link in results["links"]}
            assert {"mask.tif", "mask.geojson", "mask.gpkg", "answer.json"} <= set(hrefs)
            mask = c.get(hrefs["mask.tif"])
            assert mask.status_code == 200 and mask.content[:4] in (b"II*\x00", b"II+\x00")
            assert c.get(f"/jobs/{job_id}/results/job.json").status_code == 404
    finally:
        slow.delay = 0.0


def test_delete_stops_a_running_job_and_frees_its_disk(slow, scene_root, tmp_path):
    jobs = tmp_path / "jobs"
    slow.delay = 0.03
    try:
        with client(slow, scene_root, jobs) as c:
            job_id = _scene(c)
            _wait(c, job_id, lambda s: (s["progress"] or 0) >= 5)
            assert folder_bytes(jobs / job_id / "out") > 0  # finished windows on disk
            r = c.delete(f"/jobs/{job_id}")
            assert r.status_code == 200 and r.json()["status"] == "dismissed"
            assert not (jobs / job_id).exists()
            assert folder_bytes(jobs) == 0
            assert c.get(f"/jobs/{job_id}").status_code == 404
            assert c.get("/jobs").json()["jobs"] == []
    finally:
        slow.delay = 0.0


def test_too_many_jobs_or_waiting_jobs_get_429(slow, scene_root, tmp_path):
    png = _geotiff_url()
    slow.release.clear()  # the worker waits for its model: jobs stay queued
    try:
        with client(slow, scene_root, tmp_path / "a", jobs_queue=2, max_jobs=10) as c:
            for _ in range(3):  # the worker took the first: two wait
                assert _submit(c, "ask", image=png, question="water?").status_code == 201
                time.sleep(0.2)
            r = _submit(c, "ask", image=png, question="water?")
            assert r.status_code == 429 and r.json()["error"]["code"] == "jobs_queue_full"
            slow.release.set()
        with client(slow, scene_root, tmp_path / "b", max_jobs=2) as c:
            ids = [_submit(c, "ask", image=png, question="water?").json()["jobID"] for _ in "ab"]
            r = _submit(c, "ask", image=png, question="water?")
            assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_jobs"
            assert c.delete(f"/jobs/{ids[0]}").status_code == 200
            assert _submit(c, "ask", image=png, question="water?").status_code == 201
    finally:
        slow.release.set()


def test_a_path_outside_allow_files_is_403_and_a_vrt_400(slow, scene_root, tmp_path):
    outside = tmp_path / "outside.tif"
    write_big_scene(outside)
    link = scene_root / "link.tif"
    link.symlink_to(outside)
    (scene_root / "mosaic.vrt").write_text('<VRTDataset rasterXSize="1" rasterYSize="1"/>')
    with client(slow, scene_root, tmp_path / "jobs") as c:
        for image in (str(outside), "link.tif", "../outside.tif", f"file://{outside}"):
            r = _submit(c, "analyze-scene", image=image, prompt="water")
            assert r.status_code == 403, (image, r.text)
            assert str(outside) not in r.text
        r = _submit(c, "ask", image="mosaic.vrt", question="water?")
        assert r.status_code == 400 and "VRT" in r.json()["error"]["message"]
        r = _submit(c, "analyze-scene", image="big.tif", prompt="water", window="big")
        assert r.status_code == 400 and "inputs.window" in r.json()["error"]["message"]
        assert c.get("/jobs").json()["jobs"] == []


def test_a_scene_over_the_pixel_limit_is_413(slow, scene_root, tmp_path):
    with client(slow, scene_root, tmp_path / "jobs", scene_max_pixels=1000) as c:
        r = _submit(c, "analyze-scene", image="big.tif", prompt="water")
        assert r.status_code == 413, r.text


def test_a_wrong_key_gets_401_on_every_jobs_route(slow, scene_root, tmp_path):
    with client(slow, scene_root, tmp_path / "jobs", key="wrong") as c:
        assert c.get("/processes").status_code == 401
        assert c.get("/jobs").status_code == 401
        assert _submit(c, "ask", image="big.tif", question="water?").status_code == 401
        assert c.delete("/jobs/" + "0" * 32).status_code == 401
    assert not (tmp_path / "jobs").exists()


def test_an_ask_job_answers_with_its_masks_and_files(slow, scene_root, tmp_path):
    with client(slow, scene_root, tmp_path / "jobs") as c:
        processes = {p["id"] for p in c.get("/processes").json()["processes"]}
        assert processes == {"ask", "analyze-scene"}
        assert "question" in c.get("/processes/ask").json()["inputs"]
        assert c.get("/processes/nope").status_code == 404
        r = _submit(c, "ask", image=_geotiff_url(), question="Where is the lake? [SEG]")
        job_id = r.json()["jobID"]
        status = _wait(c, job_id, lambda s: s["status"] in ("successful", "failed"))
        assert status["status"] == "successful", status
        results = c.get(f"/jobs/{job_id}/results").json()
        masks = results["result"]["skyeye"]["masks"]
        assert masks  # the scripted answer ends with [SEG]
        total = sum(m["area_m2"] for m in masks) / 1e4
        assert results["area_ha"] == pytest.approx(total, abs=1e-3)
        geojson = c.get(f"/jobs/{job_id}/results/mask.geojson").json()
        assert geojson["type"] == "FeatureCollection"
        areas = [f["properties"]["area_m2"] for f in geojson["features"]]
        assert np.isclose(sum(areas) / 1e4, total)
        tif = c.get(f"/jobs/{job_id}/results/mask_1.tif")
        assert tif.status_code == 200 and tif.headers["content-type"].startswith("image/tiff")
        assert c.get(f"/jobs/{job_id}/results/answer.json").json()["answer"] == results["answer"]
