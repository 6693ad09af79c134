"""The chunked, multi-threaded decimated read equals rasterio's single `read(out_shape=...)`."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, Resampling

from skyeye.io import gdal
from skyeye.io.gdal import ReadOptions, chunk_plan, read_decimated
from skyeye.io.raster import read_raster


def _tile(path, bands=5, height=700, width=900, block=64, nodata=0, **extra):
    rng = np.random.default_rng(0)
    data = rng.integers(1, 4000, size=(bands, height, width), dtype=np.uint16)
    data[:, :100, :130] = 0  # a nodata corner
    profile = (
        dict(
            driver="GTiff",
            width=width,
            height=height,
            count=bands,
            dtype="uint16",
            crs="EPSG:32633",
            transform=Affine(10, 0, 300000, 0, -10, 5900000),
            tiled=True,
            blockxsize=block,
            blockysize=block,
            compress="deflate",
            interleave="pixel",
            nodata=nodata,
        )
        | extra
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _same_up_to_rounding(ours: np.ndarray, want: np.ndarray) -> None:
    """Equal, but for a rare 1-DN rounding tie of a pixel on a chunk edge (GDAL rounds the
    average of integer bands; the chunk's window offset moves the tie by an ulp)."""
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(want))
    diff = np.nan_to_num(np.abs(ours - want))
    assert diff.max() <= 1.0
    assert (diff > 0).mean() < 1e-3, (diff > 0).sum()


@pytest.mark.parametrize("blocks", [(1,), (2,), (3,)])
@pytest.mark.parametrize("threads", [1, 3])
def test_chunks_equal_one_whole_read(tmp_path, monkeypatch, blocks, threads):
    path = _tile(tmp_path / "t.tif")
    monkeypatch.setattr(gdal, "plan_workers", lambda t, *_: (t, blocks[0]))
    for out_shape in [(33, 41), (128, 97), (350, 450)]:
        with rasterio.open(path) as src:
            whole = src.read(
                out_shape=(src.count, *out_shape),
                resampling=Resampling.average,
                out_dtype="float32",
            )
        ours, mask = read_decimated(
            path, [1, 2, 3, 4, 5], out_shape, options=ReadOptions(threads=threads)
        )
        assert mask is None
        _same_up_to_rounding(ours, whole)


def test_chunk_plan_tiles_the_output_once(tmp_path):
    plan = chunk_plan((10980, 10980), (512, 512), (512, 512), (4, 1))
    cover = np.zeros((512, 512), int)
    for c in plan:
        cover[c.r0 : c.r1, c.c0 : c.c1] += 1
        # Each source window spans its output chunk at the decimation ratio.
        assert c.window.height == pytest.approx((c.r1 - c.r0) * 10980 / 512)
    assert (cover == 1).all()
    assert len({(c.r0, c.r1) for c in plan}) == 6 and len({(c.c0, c.c1) for c in plan}) == 22


@pytest.mark.parametrize("kind", ["alpha", "dataset"])
def test_masks_are_read_chunk_by_chunk_like_the_whole_read(tmp_path, monkeypatch, kind):
    path = tmp_path / f"{kind}.tif"
    if kind == "alpha":
        _tile(path, bands=4, nodata=None, photometric="RGB", alpha="YES")
        with rasterio.open(path, "r+") as dst:
            alpha = np.full((700, 900), 255, np.uint8)
            alpha[300:420, 500:] = 0
            dst.write(alpha.astype(np.uint16), 4)
    else:
        _tile(path, bands=3, nodata=None)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as dst:
            valid = np.full((700, 900), 255, np.uint8)
            valid[300:420, 500:] = 0
            dst.write_mask(valid)
    monkeypatch.setattr(gdal, "plan_workers", lambda t, *_: (t, 1))
    with rasterio.open(path) as src:
        if kind == "alpha":
            assert src.colorinterp[3] == ColorInterp.alpha
            want = src.read(4, out_shape=(93, 120)) != 0
        else:
            want = src.read_masks(1, out_shape=(93, 120)) != 0
    image = read_raster(path, max_size=120, read_options=ReadOptions(threads=2))
    assert image.data.shape[1:] == (93, 120)
    np.testing.assert_array_equal(np.isfinite(image.data).all(axis=0), want)


def test_read_raster_decimated_equals_rasterio_with_nodata_as_nan(tmp_path, monkeypatch):
    path = _tile(tmp_path / "t.tif", bands=13, height=1100, width=1000, block=128)
    monkeypatch.setattr(gdal, "plan_workers", lambda t, *_: (t, 2))
    image = read_raster(path, max_size=300, read_options=ReadOptions(threads=2, cache_mib=16))
    with rasterio.open(path) as src:
        want = src.read(out_shape=(13, 300, 273), resampling=Resampling.average).astype(np.float32)
    want[want == 0] = np.nan
    _same_up_to_rounding(image.data, want)
    assert image.transform.a == pytest.approx(10 * 1000 / 273)


def test_read_options_are_checked_and_give_the_gdal_settings():
    with pytest.raises(ValueError, match="threads"):
        ReadOptions(threads=0)
    with pytest.raises(ValueError, match="cache_mib"):
        ReadOptions(cache_mib=1)
    env = ReadOptions(threads=3, cache_mib=64).gdal_env()
    assert env == {"GDAL_NUM_THREADS": "3", "GDAL_CACHEMAX": 64 * 2**20}
    assert ReadOptions().thread_count >= 1
    # The default cache grows with the threads, so that every chunk worker keeps its blocks.
    assert ReadOptions(threads=1).cache_bytes == 128 * 2**20
    assert ReadOptions(threads=2).cache_bytes == 192 * 2**20
    assert ReadOptions(threads=64).cache_bytes == 1024 * 2**20


def test_the_plan_keeps_every_workers_blocks_in_the_cache():
    tile = 512 * 512 * 2 * 13  # a 512-px pixel-interleaved block of 13 uint16 bands
    assert gdal.plan_workers(1, tile, 128 * 2**20) == (1, 3)
    assert gdal.plan_workers(2, tile, 128 * 2**20) == (1, 3)  # two would overfill the cache
    workers, rows = gdal.plan_workers(2, tile, 192 * 2**20)
    assert (workers, rows) == (2, 2)
    assert workers * (rows + 2) * 2 * tile <= gdal.CACHE_FILL * 192 * 2**20
