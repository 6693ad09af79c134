"""Bounded memory: a whole Sentinel-2 tile (10980 x 10980 x 13 uint16) read at max_size=384."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_full_tile_read_at_384_stays_under_1_gib(tmp_path):
    # bench/read_large_tile.py writes the tile (with overviews) and measures the read in a fresh
    # subprocess, so the peak RSS is the reader's own and not this test process's.
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "read_large_tile.py"),
            "--workdir",
            str(tmp_path),
            "--max-size",
            "384",
            "--no-baseline",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = result["read_raster"]
    assert ours["shape"] == [13, 384, 384]
    assert ours["peak_rss_mib"] < 1024, ours
    # Decimated grid covers the full tile: pixel size 10980 * 10 m / 384.
    assert ours["transform"][0] == pytest.approx(10980 * 10 / 384)
