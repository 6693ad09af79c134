"""A scene's windows share one value scaling: a pixel gets the same model input in every window.

Products of unknown units are stretched per band ("minmax"). Stretched window by window, a
window of open water alone would be mapped onto the full range (water as bright as land), and
two overlapping windows would feed the model different values for the same pixel.
"""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.transform import from_origin

from skyeye.scene import analyze_scene
from skyeye.scene.infer import WindowRunner

SIZE, WINDOW, OVERLAP = 96, 48, 16


def _land_and_water(path) -> rasterio.Affine:
    """Two bands of raw counts (no sensor, not reflectance): bright land left, dark water right."""
    rng = np.random.default_rng(0)
    data = np.empty((2, SIZE, SIZE), np.uint16)
    data[:, :, : SIZE // 2] = rng.integers(1500, 4000, (2, SIZE, SIZE // 2))
    data[:, :, SIZE // 2 :] = rng.integers(100, 140, (2, SIZE, SIZE // 2))
    transform = from_origin(500000, 5800000, 10, 10)
    profile = dict(driver="GTiff", height=SIZE, width=SIZE, count=2, dtype="uint16")
    with rasterio.open(path, "w", crs="EPSG:32633", transform=transform, **profile) as dst:
        dst.write(data)
    return transform


def test_every_window_of_a_scene_gets_the_scene_s_value_scaling(session, tmp_path, monkeypatch):
    transform = _land_and_water(tmp_path / "scene.tif")
    seen: list[tuple[int, int, np.ndarray]] = []
    prepare = WindowRunner.prepare

    def spy(self, images, scaling=None):
        batch = prepare(self, images, scaling)
        for image, pixels in zip(images, batch.inputs["pixel_values_hires"], strict=True):
            col, row = ~transform @ (image.transform.c, image.transform.f)
            seen.append((round(row), round(col), pixels.numpy()))
        return batch

    monkeypatch.setattr(WindowRunner, "prepare", spy)
    # The model's inputs on each window's own grid (windows are smaller than this).
    monkeypatch.setattr(session.processor.image_processor, "hires_size", 64)
    analyze_scene(
        tmp_path / "scene.tif",
        "Where is the water?",
        tmp_path / "out",
        model=session,
        window=WINDOW,
        overlap=OVERLAP,
        wavelengths=[0.56, 0.83],
        max_new_tokens=4,
        progress=False,
    )
    assert len(seen) == 9
    canvas = np.full((len(seen), 2, SIZE, SIZE), np.nan, np.float32)
    for k, (row, col, pixels) in enumerate(seen):
        canvas[k, :, row : row + pixels.shape[1], col : col + pixels.shape[2]] = pixels
    covered = np.isfinite(canvas).sum(axis=0)
    assert covered.min() >= 1 and covered.max() >= 4  # the overlaps are compared
    spread = np.nanmax(canvas, axis=0) - np.nanmin(canvas, axis=0)
    assert float(spread.max()) == 0.0
    # Water stays dark in the windows that hold only water.
    water_only = [p for row, col, p in seen if col >= SIZE // 2]
    land_only = [p for row, col, p in seen if col + p.shape[2] <= SIZE // 2]
    assert water_only and land_only
    assert max(float(p.mean()) for p in water_only) < min(float(p.mean()) for p in land_only) - 1
