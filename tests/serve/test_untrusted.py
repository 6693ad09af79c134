"""The server opens what a request sends as an image and nothing else (issue 26's probes, replayed
against a live server): VRTs are refused and reach neither the network nor other files, symlinks
and band folders cannot leave ``--allow-files``, and oversized headers get a fast 413."""

from __future__ import annotations

import resource
import time

import numpy as np
import openai
import pytest
from hostile_inputs import (
    big_png,
    data_url,
    listener,
    sparse_geotiff,
    vrt_over,
    vrt_raw,
    write_geotiff,
)
from serve_testing import API_KEY


def _ask(base_url: str, url: str):
    client = openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)
    return client.chat.completions.create(
        model="skyeye-tiny",
        max_tokens=4,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Is there water in this image?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )


@pytest.fixture(scope="module")
def secrets(tmp_path_factory):
    """(outside raster, outside secret file): neither under the server's allowed folder."""
    folder = tmp_path_factory.mktemp("outside")
    raster = write_geotiff(folder / "private.tif", np.full((1, 8, 8), 77, np.uint8))
    secret = folder / "secret.txt"
    secret.write_bytes(b"S3CRET-BYTES")
    secret.chmod(0o600)
    return raster, secret


def test_vrt_with_a_remote_source_is_refused_and_fetches_nothing(served, tmp_path):
    base_url, root = served
    with listener() as (url, seen):
        vrt = tmp_path / "remote.vrt"
        vrt.write_text(vrt_over(f"/vsicurl/{url}/private.tif"))
        inside = root / "remote.vrt"
        inside.write_text(vrt.read_text())
        for image_url in (data_url(vrt), inside.as_uri()):
            with pytest.raises(openai.BadRequestError) as err:
                _ask(base_url, image_url)
            assert "VRT" in err.value.body["message"]
            assert err.value.body["param"] == "messages"
        time.sleep(0.3)
        assert seen == []


def test_vrt_over_local_files_leaks_no_byte(served, secrets, tmp_path):
    base_url, root = served
    raster, secret = secrets
    for i, text in enumerate(
        [vrt_over(str(raster)), *(vrt_raw(str(secret), nodata=b) for b in b"S3")]
    ):
        vrt = tmp_path / f"local{i}.tif"
        vrt.write_text(text)
        with pytest.raises(openai.BadRequestError) as err:
            _ask(base_url, data_url(vrt))
        body = str(err.value.body)
        assert "VRT" in body
        assert "S3CRET" not in body and str(secret.parent) not in body


def test_links_out_of_the_allowed_folder_are_403_without_naming_the_target(served, secrets):
    base_url, root = served
    raster, _ = secrets
    link = root / "link.tif"
    link.symlink_to(raster)
    bands = root / "bands"
    bands.mkdir()
    write_geotiff(bands / "T_B02.tif", np.ones((1, 8, 8), np.uint16))
    (bands / "T_B03.tif").symlink_to(raster)
    for path in (link, bands):
        with pytest.raises(openai.PermissionDeniedError) as err:
            _ask(base_url, path.as_uri())
        message = err.value.body["message"]
        assert str(raster) not in message and str(raster.parent) not in message
        assert str(root) not in message


@pytest.mark.parametrize("build", [sparse_geotiff, big_png], ids=["sparse-300000", "png-9000"])
def test_oversized_images_get_a_fast_413(served, tmp_path, build):
    base_url, _ = served
    path = build(tmp_path / ("big.png" if build is big_png else "big.tif"))
    mime = "image/png" if build is big_png else "image/tiff"
    started = time.perf_counter()
    with pytest.raises(openai.APIStatusError) as err:
        _ask(base_url, data_url(path, mime))
    elapsed = time.perf_counter() - started
    assert err.value.status_code == 413
    assert "--max-pixels" in err.value.body["message"]
    assert elapsed < 1.0
    # The server runs in this process: its peak memory never held the decoded pixels.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < 3 * 2**30
