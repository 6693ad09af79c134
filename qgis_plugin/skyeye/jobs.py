"""The jobs the plugin started, remembered per server URL in `QgsSettings` (written to disk at
once), so that QGIS closed while a job runs finds it again: a finished job's results load as
layers (the panel's Jobs list, or the "Load SkyEye job results" algorithm), a running one shows
its progress, one the server no longer has is forgotten with a message."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from typing import Any

from qgis.core import QgsSettings, QgsVectorLayer

from .client import SkyEyeClient, SkyEyeClientError
from .layers import BOX_STYLE, MASK_STYLE, features_layer

GROUP = "skyeye/jobs/"


def _key(url: str) -> str:
    return GROUP + hashlib.sha1(url.rstrip("/").encode()).hexdigest()[:16]


def remembered(url: str) -> list[dict[str, Any]]:
    """The jobs started on the server at ``url`` and not yet loaded or dropped, oldest first:
    {"id", "process", "name" (the layer asked about), "started" (epoch seconds)}."""
    settings = QgsSettings()
    settings.sync()  # another QGIS (or one that closed) may have written meanwhile
    try:
        jobs = json.loads(str(settings.value(_key(url), "[]") or "[]"))
    except ValueError:
        return []
    return [j for j in jobs if isinstance(j, dict) and j.get("id")]


def _store(url: str, jobs: list[dict[str, Any]]) -> None:
    settings = QgsSettings()
    settings.setValue(_key(url), json.dumps(jobs))
    settings.sync()


def remember(url: str, job_id: str, process: str, name: str) -> None:
    jobs = [j for j in remembered(url) if j["id"] != job_id]
    jobs.append({"id": job_id, "process": process, "name": name, "started": time.time()})
    _store(url, jobs)


def forget(url: str, job_id: str) -> None:
    _store(url, [j for j in remembered(url) if j["id"] != job_id])


def status_or_none(client: SkyEyeClient, job_id: str) -> dict[str, Any] | None:
    """The job's status, None when the server no longer has it (404: deleted, expired)."""
    try:
        return client.job(job_id)
    except SkyEyeClientError as err:
        if err.status == 404:
            return None
        raise


def job_collections(
    client: SkyEyeClient, results: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(mask polygons, boxes) of a job's results as GeoJSON FeatureCollections (None when it
    has none): inline in an ``ask`` answer, downloaded for a scene job."""
    extension = (results.get("result") or {}).get("skyeye") or {}
    masks, boxes = extension.get("masks_geojson"), extension.get("boxes_geojson")
    hrefs = {link["title"]: link["href"] for link in results.get("links", [])}
    with tempfile.TemporaryDirectory(prefix="skyeye-qgis-") as tmp:
        for name in ("mask.geojson", "boxes.geojson"):
            if name in hrefs and (masks if name.startswith("mask") else boxes) is None:
                target = os.path.join(tmp, name)
                client.download(hrefs[name], target)
                with open(target, encoding="utf-8") as f:
                    collection = json.load(f)
                if name.startswith("mask"):
                    masks = collection
                else:
                    boxes = collection
    return masks, boxes


def result_layers(
    client: SkyEyeClient, job_id: str, name: str
) -> tuple[dict[str, Any], list[QgsVectorLayer]]:
    """A finished job's (results, layers): its masks and boxes as styled layers, built whole
    and not yet added to the project."""
    results = client.results(job_id)
    masks, boxes = job_collections(client, results)
    layers = []
    if masks and masks.get("features"):
        layers.append(features_layer(masks, f"{name} mask", MASK_STYLE))
    if boxes and boxes.get("features"):
        layers.append(features_layer(boxes, f"{name} boxes", BOX_STYLE))
    return results, layers
