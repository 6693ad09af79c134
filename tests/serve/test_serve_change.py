"""A multi-date question to `skyeye.serve`: several `image_url` parts in one user message are
dated, aligned and answered with the change mask as GeoJSON and the measured transitions; bad
pairs are one-line 400s."""

from __future__ import annotations

import base64
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from serve_testing import API_KEY
from skyeye_testing import change_chat, two_dates, write_tiff

from skyeye.chat.readable import render_readable
from skyeye.io.raster import RasterImage


def tiff_url(image: RasterImage) -> str:
    """``image`` as a GeoTIFF data URL (`write_tiff`: float32, NaN nodata, CRS, transform)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = write_tiff(image, Path(tmp) / "image.tif").read_bytes()
    return "data:image/tiff;base64," + base64.b64encode(data).decode()


def part(image: RasterImage, date: str | None) -> dict:
    ext: dict = {"wavelengths": [0.49, 0.56, 0.665, 0.842]}
    if date is not None:
        ext["date"] = date
    return {"type": "image_url", "image_url": {"url": tiff_url(image)}, "skyeye": ext}


def pair_request(images, dates, question="What changed between these dates?") -> dict:
    parts = [part(im, d) for im, d in zip(images, dates, strict=True)]
    return {
        "model": "skyeye-tiny",
        "messages": [{"role": "user", "content": [*parts, {"type": "text", "text": question}]}],
    }


@pytest.fixture(scope="module")
def change_api(tiny_llm_dir):
    """A `TestClient` over the tiny SkyEye with scripted mask and change decoders."""
    from fastapi.testclient import TestClient

    from skyeye.serve import ServeConfig, create_app

    chat = change_chat(tiny_llm_dir)
    app = create_app(ServeConfig(model="skyeye-tiny", api_key=API_KEY, max_new_tokens=8), chat)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(app, headers=headers, raise_server_exceptions=False) as client:
        client.chat = chat
        yield client


def test_two_images_get_the_change_geojson_and_transitions(change_api):
    before, after, area = two_dates(nodata_rows=0)
    response = change_api.post(
        "/v1/chat/completions", json=pair_request([before, after], ["2018-05-01", "2020-05-01"])
    )
    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    change = message["skyeye"]["change"]
    assert message["skyeye"]["raw"].startswith("<p>changed land cover</p> [SEG] Yes — ")
    assert (
        message["content"].startswith("Yes — ") and ", mask 1: water gained " in message["content"]
    )
    assert change["images"] == [0, 1] and change["dates"] == ["2018-05-01", "2020-05-01"]
    assert abs(change["area_m2"] - area) / area < 0.1  # the lake that appeared
    feature = change["geojson"]
    assert feature["properties"]["phrase"] == "changed land cover"
    lon, lat = feature["geometry"]["coordinates"][0][0][0]
    assert 14.9 < lon < 15.1 and 52.3 < lat < 52.4  # UTM 33N, 500 km E, 5800 km N
    water = change["transitions"][0]
    assert water["class"] == "water" and water["lost_m2"] == 0
    assert abs(water["gained_m2"] - area) / area < 0.1


def _error(response) -> str:
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "\n" not in message and "Traceback" not in message
    return message


def test_images_that_do_not_overlap_are_a_400(change_api):
    before, after, _ = two_dates(nodata_rows=0)
    far = dataclasses.replace(
        after, transform=after.transform @ after.transform.translation(500, 0)
    )
    message = _error(
        change_api.post("/v1/chat/completions", json=pair_request([before, far], [None, None]))
    )
    assert "do not overlap" in message and "give images of the same place" in message


def test_one_date_without_data_over_the_overlap_is_a_400(change_api):
    before, after, _ = two_dates(nodata_rows=0)
    before.data[:, :, 32:] = np.nan  # data on the left half only
    after.data[:, :, :32] = np.nan  # data on the right half only
    message = _error(
        change_api.post("/v1/chat/completions", json=pair_request([before, after], [None, None]))
    )
    assert "do not overlap" in message


def test_dates_in_the_wrong_order_are_a_400(change_api):
    before, after, _ = two_dates()
    message = _error(
        change_api.post(
            "/v1/chat/completions",
            json=pair_request([before, after], ["2020-05-01", "2018-05-01"]),
        )
    )
    assert "dates run backwards" in message and "give the earlier image first" in message
    message = _error(
        change_api.post(
            "/v1/chat/completions", json=pair_request([before, after], ["2020-05-01", "May"])
        )
    )
    assert "'skyeye.date'" in message and "YYYY-MM-DD" in message


def test_more_images_than_the_context_holds_are_a_400(change_api):
    before, _, _ = two_dates()
    processor = change_api.chat.processor
    n = processor.max_length // processor.num_image_tokens + 1
    response = change_api.post(
        "/v1/chat/completions", json=pair_request([before] * n, [None] * n, "What changed?")
    )
    assert _error(response).startswith("the conversation is ")
    assert response.json()["error"]["code"] == "context_length_exceeded"


def test_a_date_all_cloud_over_the_overlap_is_a_400(change_api):
    """An after date bright and white in every band is all cloud by the spectral test (0-1
    reflectance), so nothing can be compared."""
    before, after, _ = two_dates(nodata_rows=0)
    before.data /= 255  # 0-1 reflectance
    after.data[:] = 0.94
    proc = change_api.chat.processor.image_processor
    scaling = proc.value_scaling
    proc.value_scaling = "reflectance"
    try:
        response = change_api.post(
            "/v1/chat/completions", json=pair_request([before, after], [None, None])
        )
    finally:
        proc.value_scaling = scaling
    message = _error(response)
    assert "share no pixel with data and without cloud on both dates" in message


def test_a_streamed_change_answer_ends_with_the_change_extension(change_api):
    before, after, _ = two_dates(nodata_rows=0)
    body = pair_request([before, after], ["2018-05-01", "2020-05-01"], "Where did water appear?")
    with change_api.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        events = [
            json.loads(line[6:])
            for line in r.iter_lines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    last = events[-1]["choices"][0]["delta"]["skyeye"]
    assert text == render_readable(last["raw"]) and text.startswith("Yes — ")
    assert last["change"]["phrase"] == "new water" and last["change"]["geojson"] is not None
