"""`ReadPolicy`: input from a request is opened as a plain raster and nothing else.

Each hostile file here was used against the server before the policy existed: a VRT that fetched
a URL, one that read a raster outside the allowed folder, a raw band that leaked any file byte by
byte, symlinks and STAC hrefs out of the root, and headers declaring more pixels than memory.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from hostile_inputs import big_png, listener, sparse_geotiff, vrt_over, vrt_raw, write_geotiff

from skyeye.errors import OutsideRootError, PixelLimitError, UntrustedFormatError
from skyeye.io.policy import ReadPolicy, sniff_format
from skyeye.io.raster import check_request_source, read_raster


@pytest.fixture
def outside(tmp_path):
    """(root the policy allows, a raster outside it, a secret file outside it)."""
    root = tmp_path / "root"
    root.mkdir()
    data = np.arange(64, dtype=np.uint8).reshape(1, 8, 8)
    raster = write_geotiff(tmp_path / "outside.tif", data)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"S3CRET")
    secret.chmod(0o600)
    return root, raster, secret


def test_user_files_keep_every_driver(outside):
    # The user's own command line still reads a VRT (GDAL's own format for mosaics and stacks).
    root, raster, _ = outside
    vrt = root / "mosaic.vrt"
    vrt.write_text(vrt_over(str(raster)))
    assert read_raster(vrt).data.shape == (1, 8, 8)


def test_vrt_fetching_a_url_is_refused_and_nothing_is_fetched(tmp_path):
    with listener() as (url, seen):
        vrt = tmp_path / "image.tif"
        vrt.write_text(vrt_over(f"/vsicurl/{url}/x.tif"))
        with pytest.raises(UntrustedFormatError, match="VRT"):
            read_raster(vrt, max_size=64, policy=ReadPolicy(root=tmp_path))
        # Without the policy GDAL really goes out: the same file sends the listener a request.
        with pytest.raises(ValueError):
            read_raster(vrt, max_size=64)
        assert seen, "the unprotected read should have reached the listener"
        seen.clear()
        with pytest.raises(UntrustedFormatError):
            read_raster(vrt, max_size=64, policy=ReadPolicy())
        time.sleep(0.2)
        assert seen == []


def test_vrt_over_an_outside_raster_and_raw_band_are_refused(outside, tmp_path):
    root, raster, secret = outside
    for i, text in enumerate([vrt_over(str(raster)), vrt_raw(str(secret), nodata=ord("S"))]):
        upload = root / f"upload{i}.tif"
        upload.write_text(text)
        with pytest.raises(UntrustedFormatError) as err:
            read_raster(upload, max_size=64, policy=ReadPolicy(root=root))
        assert "S3CRET" not in str(err.value)
        assert str(tmp_path / "outside") not in str(err.value)


def test_symlinks_and_band_folders_leading_out_of_the_root_are_refused(outside):
    root, raster, _ = outside
    (root / "link.tif").symlink_to(raster)
    with pytest.raises(OutsideRootError) as err:
        read_raster(root / "link.tif", max_size=64, policy=ReadPolicy(root=root))
    assert str(raster) not in str(err.value)  # never says where the link leads
    bands = root / "bands"
    bands.mkdir()
    write_geotiff(bands / "T_B02.tif", np.ones((1, 8, 8), np.uint16))
    (bands / "T_B03.tif").symlink_to(raster)
    with pytest.raises(OutsideRootError):
        read_raster(bands, max_size=64, policy=ReadPolicy(root=root))
    os.unlink(bands / "T_B03.tif")
    write_geotiff(bands / "T_B03.tif", np.ones((1, 8, 8), np.uint16))
    assert read_raster(bands, max_size=64, policy=ReadPolicy(root=root)).data.shape[0] == 2


def test_stac_hrefs_outside_the_root_are_refused(outside):
    root, raster, _ = outside
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "x",
        "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "geometry": None,
        "links": [],
        "assets": {
            "B04": {
                "href": str(raster),
                "type": "image/tiff; application=geotiff",
                "eo:bands": [{"name": "B04", "common_name": "red", "center_wavelength": 0.665}],
            }
        },
    }
    path = root / "item.json"
    path.write_text(json.dumps(item))
    with pytest.raises(OutsideRootError):
        read_raster(path, max_size=64, policy=ReadPolicy(root=root))
    with pytest.raises(OutsideRootError):
        check_request_source(path, ReadPolicy(root=root))


def test_declared_size_is_checked_before_decoding(tmp_path):
    tiff = sparse_geotiff(tmp_path / "sparse.tif")
    png = big_png(tmp_path / "big.png")
    for path, pixels in ((tiff, 300_000**2), (png, 9000**2)):
        started = time.perf_counter()
        with pytest.raises(PixelLimitError) as err:
            read_raster(path, max_size=512, policy=ReadPolicy())
        assert time.perf_counter() - started < 1.0
        assert err.value.pixels == pixels
        assert "--max-pixels" in str(err.value)


def test_many_bands_count_against_the_limit(tmp_path):
    path = write_geotiff(tmp_path / "bands.tif", np.zeros((40, 64, 64), np.float64))
    with pytest.raises(PixelLimitError, match="bands"):
        read_raster(path, policy=ReadPolicy(max_pixels=64 * 64))
    assert read_raster(path, policy=ReadPolicy(max_pixels=64 * 64 * 10)).data.shape[0] == 40


def test_formats_are_told_by_their_bytes_not_their_names(tmp_path):
    png = tmp_path / "photo.tif"  # a PNG named .tif is still read, as a PNG
    from PIL import Image

    Image.new("RGB", (16, 16), (10, 20, 30)).save(png, format="PNG")
    assert sniff_format(png, "x") == "png"
    assert read_raster(png, policy=ReadPolicy()).band_names == ["R", "G", "B"]
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"GIF89a" + bytes(64))
    with pytest.raises(UntrustedFormatError, match="not a readable raster"):
        read_raster(junk, policy=ReadPolicy())
