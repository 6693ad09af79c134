"""Whole-scene stitching with the real embedded model on a real Sentinel-2 scene (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from skyeye_testing import REPO

from skyeye.scene import analyze_scene
from skyeye.scene.store import WindowStore

pytestmark = pytest.mark.slow


def test_a_mask_crossing_window_borders_has_no_seam(tmp_path):
    import torch

    from skyeye.chat.session import load_chat

    torch.set_num_threads(1)
    session = load_chat("skyeye-tiny", dtype=torch.float32)
    scene = REPO / "examples" / "sentinel2_berlin_l1c.tif"
    with rasterio.open(scene) as src:
        t = src.transform
    # 384 x 192 px: three 192-px windows side by side, overlapping by 64 px.
    bbox = [t.c, t.f - 192 * 10, t.c + 384 * 10, t.f]
    result = analyze_scene(
        scene,
        "Show me where the water is with a mask.",
        tmp_path,
        model=session,
        bbox=bbox,
        window=192,
        overlap=64,
        batch=3,
        progress=False,
        force_answer="<p>water</p> [SEG]",
    )
    with rasterio.open(result.paths["mask"]) as m:
        stitched = m.read(1) == 1
    store = WindowStore.existing(tmp_path / ".scene-work")
    cols = []
    for index in range(result.windows_total):
        rec, arrays = store.record(index), store.arrays(index)
        own = arrays["prob"].astype(np.float32) >= 0.5
        part = stitched[rec["row"] : rec["row"] + 192, rec["col"] : rec["col"] + 192]
        # The stitched mask equals each window's own mask, up to the blended overlap bands.
        assert (part == own).mean() >= 0.9
        cols.append(rec["col"])
    assert cols == [0, 128, 192]
    # The mask crosses the window borders (present on both sides) ...
    for edge in (128, 192, 320):
        assert stitched[:, edge - 8 : edge].any() and stitched[:, edge : edge + 8].any()
    # ... and no seam: pixels flip across a window's edge no more often than across any column.
    flips = (stitched[:, 1:] != stitched[:, :-1]).mean(axis=0)
    for edge in (128, 192, 320):
        assert flips[edge - 1] <= max(3 * np.median(flips), 0.05)
