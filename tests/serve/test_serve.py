"""`skyeye.serve` through the official OpenAI client against a live server (tiny random model)."""

from __future__ import annotations

import asyncio
import base64
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from serve_testing import API_KEY

from skyeye.errors import ServeRequestError
from skyeye.serve.gate import Gate

REPO = Path(__file__).resolve().parents[2]
S2 = REPO / "examples" / "sentinel2_berlin_l1c.tif"
NAIP = REPO / "examples" / "naip_rgbn.tif"


def data_url(path: Path, mime: str = "image/tiff") -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def question(text: str, url: str, **ext) -> list[dict]:
    part = {"type": "image_url", "image_url": {"url": url}}
    if ext:
        part["skyeye"] = ext
    return [{"role": "user", "content": [{"type": "text", "text": text}, part]}]


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served[0], api_key=API_KEY, max_retries=0, timeout=120)


def _check_mask_geojson(extension: dict) -> None:
    fc = extension["masks_geojson"]
    assert fc["type"] == "FeatureCollection" and fc["features"]
    mask = extension["masks"][0]
    assert mask["image"] == 0 and mask["pixel_count"] > 0 and mask["area_m2"] > 0
    lon_lat = [pt for poly in fc["features"][0]["geometry"]["coordinates"] for pt in poly[0]]
    # EPSG:4326 lon/lat inside the example's footprint (12.65-12.72 E, 52.47-52.51 N).
    assert all(12.6 < lon < 12.8 and 52.4 < lat < 52.6 for lon, lat in lon_lat)
    # Its area is the mask's share of the 5.12 km x 5.12 km scene (10 m pixels on a 512 grid).
    share = mask["pixel_count"] / (mask["shape"][0] * mask["shape"][1])
    assert mask["area_m2"] == pytest.approx(share * 5120 * 5120, rel=0.02)


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == ["skyeye-tiny"]


def test_answer_about_the_geotiff_carries_the_mask_geojson(client):
    reply = client.chat.completions.create(
        model="skyeye-tiny", messages=question("segment the lake", data_url(S2))
    )
    message = reply.choices[0].message
    assert message.role == "assistant" and message.content
    _check_mask_geojson(message.model_extra["skyeye"])


def test_streamed_answer_matches_the_plain_one_and_ends_with_the_extension(client):
    messages = question("is there water ?", data_url(S2))
    plain = client.chat.completions.create(model="skyeye-tiny", messages=messages)
    chunks = list(
        client.chat.completions.create(model="skyeye-tiny", messages=messages, stream=True)
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() == plain.choices[0].message.content
    last = chunks[-1].choices[0]
    assert last.finish_reason in ("stop", "length")
    _check_mask_geojson(last.delta.model_extra["skyeye"])


def test_eight_concurrent_clients_each_get_their_own_answer(client):
    # Different images and answer lengths: each reply must be the one its request gets alone.
    requests = [
        (question("describe this image .", data_url(S2 if i % 2 else NAIP)), 3 + i)
        for i in range(8)
    ]

    def ask(req):
        messages, max_tokens = req
        r = client.chat.completions.create(
            model="skyeye-tiny", messages=messages, max_tokens=max_tokens
        )
        return r.choices[0].message.content, r.choices[0].message.model_extra["skyeye"]["masks"]

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, requests))
    alone = [ask(req) for req in requests]
    assert [t for t, _ in together] == [t for t, _ in alone]
    # Masks come from hidden states computed in a padded batch: equal up to float noise at the
    # threshold (a pixel or two of a mask), not bit for bit.
    for (_, m_together), (_, m_alone) in zip(together, alone, strict=True):
        a, b = m_together[0]["pixel_count"], m_alone[0]["pixel_count"]
        assert abs(a - b) <= max(2, 0.005 * b), (a, b)
    assert len({t for t, _ in together}) > 1  # the answers really differ between requests


def test_earlier_turns_and_system_prompt_are_replayed(client):
    messages = [
        {"role": "system", "content": "you are skyeye ."},
        *question("describe this image .", data_url(NAIP)),
        {"role": "assistant", "content": "fields forest river"},
        {"role": "user", "content": "is there water ?"},
    ]
    reply = client.chat.completions.create(model="skyeye-tiny", messages=messages)
    assert reply.choices[0].message.content
    assert reply.choices[0].message.model_extra["skyeye"]["masks"][0]["image"] == 0


def test_wrong_key_gets_401(served):
    bad = openai.OpenAI(base_url=served[0], api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.models.list()
    assert err.value.status_code == 401
    assert "API key" in err.value.body["message"]


@pytest.mark.parametrize(
    ("url", "ext", "expected"),
    [
        (
            "data:image/tiff;base64," + base64.b64encode(b"not a tiff" * 20).decode(),
            {},
            "not a readable raster",
        ),
        ("data:image/png;base64,", {}, "empty"),
        ("data:image/tiff;base64,@@@", {}, "not valid base64"),
        ("data:image/gif;base64,R0lG", {}, "unsupported image type"),
        ("https://example.com/a.tif", {}, "not fetched"),
        (None, {"wavelengths": [0.665, 0.56, 0.49]}, "3 wavelengths"),
    ],
)
def test_bad_images_get_a_400_naming_the_problem(client, url, ext, expected):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="skyeye-tiny", messages=question("describe", url or data_url(S2), **ext)
        )
    assert err.value.status_code == 400
    assert expected in err.value.body["message"]
    assert "Traceback" not in err.value.body["message"]


def test_prompt_too_long_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="skyeye-tiny", messages=question("water " * 2000, data_url(NAIP))
        )
    assert err.value.code == "context_length_exceeded"


def test_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
        )


def test_request_over_the_size_limit_gets_413(served):
    big = "x" * (5 * 1024 * 1024)
    r = httpx.post(
        f"{served[0]}/chat/completions",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"model": "skyeye-tiny", "messages": [{"role": "user", "content": big}]},
        timeout=60,
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


def test_file_urls_only_inside_the_allowed_folder(client, served):
    root = served[1]
    shutil.copy(NAIP, root / "naip.tif")
    ok = client.chat.completions.create(
        model="skyeye-tiny", messages=question("describe", (root / "naip.tif").as_uri())
    )
    assert ok.choices[0].message.model_extra["skyeye"]["masks"][0]["area_m2"] > 0
    # A STAC item works as well (its relative href resolved next to it).
    for f in (S2, REPO / "examples" / "sentinel2_berlin_l1c.stac.json"):
        shutil.copy(f, root / f.name)
    stac = client.chat.completions.create(
        model="skyeye-tiny",
        messages=question("describe", (root / "sentinel2_berlin_l1c.stac.json").as_uri()),
    )
    _check_mask_geojson(stac.choices[0].message.model_extra["skyeye"])
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="skyeye-tiny", messages=question("describe", S2.as_uri())
        )


def test_gate_answers_429_beyond_the_queue():
    async def scenario() -> int:
        gate = Gate(concurrency=1, queue_size=1)
        running = await gate.enter()
        waiting = asyncio.ensure_future(gate.enter())  # queued
        await asyncio.sleep(0)
        with pytest.raises(ServeRequestError) as err:
            await gate.enter()
        running.release()
        running.release()  # a second release (another way out of the request) is a no-op
        second = await waiting  # the queued one gets the slot once the first leaves
        assert gate.inside == 1
        second.release()
        assert gate.inside == 0
        return err.value.status

    assert asyncio.run(scenario()) == 429


def test_cli_refuses_bad_settings_with_one_line(tmp_path, capsys):
    from skyeye.serve.cli import main

    assert main(["--allow-files", str(tmp_path / "missing")]) == 2
    assert main(["--concurrency", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: --allow-files {tmp_path / 'missing'}: not a folder",
        "error: concurrency must be at least 1, got 0",
    ]


def test_usage_counts_the_prompt_and_the_answer(client):
    reply = client.chat.completions.create(
        model="skyeye-tiny", max_tokens=5, messages=question("is there water ?", data_url(S2))
    )
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens > 16  # the image's tokens are counted
    assert 1 <= usage.completion_tokens <= 5 + 2  # the scripted model appends [SEG] and an end
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    chunks = list(
        client.chat.completions.create(
            model="skyeye-tiny",
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
            messages=question("is there water ?", data_url(S2)),
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage == usage
    assert all(c.usage is None for c in chunks[:-1])
