"""GDAL settings of every read (`ReadOptions`) and the chunked, multi-threaded decimated read.

Why a decimated read of a big raster without overviews is chunked (`read_decimated`): GDAL
resamples a multi-band request band by band when the bands have their own nodata masks, so one
``read(out_shape=...)`` of a whole pixel-interleaved tile decodes every block once per band unless
the block cache holds the whole decoded file (3.1 GB for a 10980² x 13 uint16 Sentinel-2 tile).
Cut into block-aligned chunks whose blocks fit the (bounded) cache, every block is decoded about
once, and chunks run on several threads, each with its own dataset handle (GDAL handles are not
shared between threads; rasterio releases the GIL while GDAL reads). The output of every chunk
is GDAL's own resampling of a floating-point source window, so the chunks together equal the
single whole-raster call (tests/io/test_decimated_read.py).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from skyeye.io.policy import UNTRUSTED_GDAL_ENV

logger = logging.getLogger(__name__)

#: GDAL's block cache with one thread (GDAL's own default is 5 % of RAM); each further thread
#: adds `CACHE_MIB_PER_THREAD`, up to `MAX_DEFAULT_CACHE_MIB`.
DEFAULT_CACHE_MIB = 128
CACHE_MIB_PER_THREAD = 64
MAX_DEFAULT_CACHE_MIB = 1024
#: Share of the block cache a decimated read plans to fill: fuller, GDAL's least-recently-used
#: eviction starts dropping the other bands of blocks still needed (measured on a 5490² x 13
#: tile: 2 workers filling 81 % of a 128 MiB cache decoded 2.7x more than at 54 % of 192 MiB).
CACHE_FILL = 0.55


@dataclass(frozen=True)
class ReadOptions:
    """How rasters are decoded; entry points build it from their flags and pass it down.

    threads: decoding threads (None: every core, ``os.cpu_count()``). Used as GDAL_NUM_THREADS
        (GeoTIFF multi-threaded decoding of reads that cover several blocks) and as the number
        of chunk workers of `read_decimated`.
    cache_mib: GDAL block cache (GDAL_CACHEMAX) in MiB: bounds the memory of a read (None:
        128 MiB for one thread + 64 MiB per further thread, at most 1 GiB); a decimated read
        runs as many chunk workers as the cache holds working sets for.
    untrusted: the file came from a request: GDAL opens it without sibling files, side
        metadata or network access (`skyeye.io.policy.UNTRUSTED_GDAL_ENV`).
    """

    threads: int | None = None
    cache_mib: int | None = None
    untrusted: bool = False

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(
                f"threads must be at least 1 (or None for all cores), got {self.threads}"
            )
        if self.cache_mib is not None and self.cache_mib < 8:
            raise ValueError(f"cache_mib must be at least 8 MiB, got {self.cache_mib}")

    @property
    def thread_count(self) -> int:
        return self.threads if self.threads is not None else max(1, os.cpu_count() or 1)

    @property
    def cache_bytes(self) -> int:
        mib = self.cache_mib
        if mib is None:
            extra = CACHE_MIB_PER_THREAD * (self.thread_count - 1)
            mib = min(MAX_DEFAULT_CACHE_MIB, DEFAULT_CACHE_MIB + extra)
        return mib * 1024 * 1024

    def gdal_env(self, threads: int | None = None) -> dict[str, int | str]:
        """Options for ``rasterio.Env``: GDAL_NUM_THREADS and GDAL_CACHEMAX (bytes), and the
        isolation settings of an untrusted read."""
        env: dict[str, int | str] = {
            "GDAL_NUM_THREADS": str(threads or self.thread_count),
            "GDAL_CACHEMAX": self.cache_bytes,
        }
        if self.untrusted:
            env.update(UNTRUSTED_GDAL_ENV)
        return env


@dataclass(frozen=True)
class Chunk:
    """Output rows [r0, r1) x columns [c0, c1) and the source window (float) they sample."""

    r0: int
    r1: int
    c0: int
    c1: int
    window: Window


def chunk_plan(
    src_shape: tuple[int, int],
    out_shape: tuple[int, int],
    block_shape: tuple[int, int],
    blocks_per_chunk: tuple[int, int],
) -> list[Chunk]:
    """Output chunks in raster order whose source windows span about `blocks_per_chunk`
    (rows, cols) blocks of the file; chunk edges are the output rows/columns nearest to block
    edges, so a chunk touches at most one block row/column more than it spans."""
    (h, w), (oh, ow) = src_shape, out_shape
    sy, sx = h / oh, w / ow
    step_r, step_c = block_shape[0] * blocks_per_chunk[0], block_shape[1] * blocks_per_chunk[1]
    rows = sorted({min(oh, round(r / sy)) for r in range(0, h, step_r)} | {oh})
    cols = sorted({min(ow, round(c / sx)) for c in range(0, w, step_c)} | {ow})
    return [
        Chunk(r0, r1, c0, c1, Window(c0 * sx, r0 * sy, (c1 - c0) * sx, (r1 - r0) * sy))
        for r0, r1 in zip(rows[:-1], rows[1:], strict=True)
        if r1 > r0
        for c0, c1 in zip(cols[:-1], cols[1:], strict=True)
        if c1 > c0
    ]


def plan_workers(threads: int, block_bytes: int, cache_bytes: int) -> tuple[int, int]:
    """(workers, block rows per chunk) for chunks one block column wide.

    A chunk k block rows tall touches up to (k + 2) x 2 blocks (its window overlaps the blocks
    above, below and to the right); every worker keeps that working set in the shared cache,
    and all of them together fill at most `CACHE_FILL` of it. Workers come first, then taller
    chunks (each chunk-row edge decodes one block row twice).
    """
    budget = CACHE_FILL * cache_bytes / max(1, block_bytes)  # blocks
    workers = max(1, min(threads, int(budget // 6)))  # a 1-row chunk touches 3 x 2 blocks
    rows = max(1, int(budget / workers // 2) - 2)
    return workers, rows


def read_decimated(
    path: str | os.PathLike,
    indexes: Sequence[int],
    out_shape: tuple[int, int],
    *,
    resampling: Resampling = Resampling.average,
    mask: Literal["alpha", "dataset"] | None = None,
    alpha_index: int | None = None,
    options: ReadOptions | None = None,
    driver: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read bands `indexes` of `path` resampled to `out_shape` (H', W'), chunk by chunk.

    mask: also read, on the same grid with nearest resampling, the alpha band `alpha_index`
        ("alpha") or the per-dataset mask ("dataset"), chunk by chunk with the data.
    driver: the only GDAL driver allowed to open `path` (None: any).

    Returns data (C, H', W') float32 (the file's values; nodata is not replaced here) and the
    mask (H', W') uint8 (0 = invalid) or None.
    """
    options = options or ReadOptions()
    oh, ow = out_shape
    with rasterio.Env(**options.gdal_env()), rasterio.open(path, driver=driver) as src:
        block = src.block_shapes[0]
        itemsize = max(np.dtype(dt).itemsize for dt in src.dtypes)
        # A pixel-interleaved block holds every band; a band-interleaved read touches one per band.
        block_bytes = block[0] * block[1] * itemsize * src.count
        src_shape = (src.height, src.width)
    workers, rows = plan_workers(options.thread_count, block_bytes, options.cache_bytes)
    plan = chunk_plan(src_shape, out_shape, block, (rows, 1))
    workers = min(workers, len(plan))
    data = np.empty((len(indexes), oh, ow), np.float32)
    valid = np.empty((oh, ow), np.uint8) if mask else None
    # Contiguous runs of chunks per worker: neighbours share blocks in the worker's cache.
    size = math.ceil(len(plan) / workers)
    groups = [plan[i : i + size] for i in range(0, len(plan), size)]
    gdal_threads = max(1, options.thread_count // workers)
    logger.debug(
        "%s: %d x %d -> %d x %d in %d chunks on %d workers",
        path,
        src_shape[0],
        src_shape[1],
        oh,
        ow,
        len(plan),
        workers,
    )

    def run(group: list[Chunk]) -> None:
        env = rasterio.Env(**options.gdal_env(gdal_threads))
        with env, rasterio.open(path, driver=driver) as src:
            for c in group:
                shape = (c.r1 - c.r0, c.c1 - c.c0)
                data[:, c.r0 : c.r1, c.c0 : c.c1] = src.read(
                    list(indexes),
                    window=c.window,
                    out_shape=(len(indexes), *shape),
                    resampling=resampling,
                    out_dtype="float32",
                )
                if valid is None:
                    continue
                if mask == "alpha":
                    part = src.read(alpha_index, window=c.window, out_shape=shape)
                else:
                    part = src.read_masks(indexes[0], window=c.window, out_shape=shape)
                valid[c.r0 : c.r1, c.c0 : c.c1] = part != 0

    if workers == 1:
        run(plan)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for done in [pool.submit(run, g) for g in groups]:
                done.result()
    return data, valid
