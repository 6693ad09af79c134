"""Overlays land where boxes and masks are; the band table and the sensor choice edit what the model sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from demo.bands import NO_SENSOR, BandTableError, apply_rows, apply_sensor, band_rows
from skyeye.grounding.parse import parse_boxes
from skyeye.io.raster import RasterImage, read_raster
from skyeye.render.overlay import MASK_ALPHA, PALETTE, display_scale, draw_overlay

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_box_outline_and_mask_fill_land_on_the_right_pixels() -> None:
    preview = np.zeros((512, 512, 3), dtype=np.uint8)
    (box,) = parse_boxes("<p>lake</p>{<10><20><50><60>}")
    mask = np.zeros((512, 512), dtype=bool)
    mask[300:400, 300:400] = True
    out = draw_overlay(preview, [box], [mask], ["field"])
    assert out.shape == (512, 512, 3)
    # Mask k=0 uses the first colour, blended with black at MASK_ALPHA.
    expected = np.round(MASK_ALPHA * np.array(PALETTE[0])).astype(int)
    assert np.abs(out[390, 390].astype(int) - expected).max() <= 1
    assert (out[450, 450] == 0).all()  # outside every mask and box
    # The box (after the mask in colour order) is outlined along x = 0.5 * 512 between its y's.
    assert tuple(out[250, 256]) == PALETTE[1]
    assert (out[250, 200] == 0).all()  # inside the box: not filled


def test_small_images_are_enlarged_and_labels_drawn() -> None:
    preview = np.full((120, 120, 3), 100, dtype=np.uint8)
    assert display_scale((120, 120)) == 5
    (box,) = parse_boxes("{<0><0><100><100>}")
    out = draw_overlay(preview, [box])
    assert out.shape == (600, 600, 3)
    # The label "box 1" is drawn on a black background near the top-left corner.
    assert (out[:40, :80] == 0).all(axis=-1).any()
    with pytest.raises(ValueError, match="uint8"):
        draw_overlay(preview.astype(np.float32))


def test_band_rows_from_sentinel2_metadata() -> None:
    image = read_raster(EXAMPLES / "sentinel2_berlin_l1c.tif", max_size=16)
    rows = band_rows(image)
    assert len(rows) == 13
    assert rows[8] == [9, "B8A", 0.865]


def _generic(count: int) -> RasterImage:
    data = np.ones((count, 4, 4), dtype=np.float32)
    return RasterImage(data=data, band_names=[f"band_{i + 1}" for i in range(count)])


def test_apply_rows_sets_names_wavelengths_and_sensor() -> None:
    image = _generic(3)
    rows = [[1, "red", "0.665"], [2, "green", 0.56], [3, "nir", "0,842"]]
    new = apply_rows(image, rows, NO_SENSOR)
    assert new.band_names == ["red", "green", "nir"]
    assert new.wavelengths == [0.665, 0.56, 0.842]
    assert new.sensor is None and image.band_names[0] == "band_1"  # the original is untouched


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1, "a", 0.5], [2, "b", 0.6]], "2 rows but the image has 3 bands"),
        ([[1, "a", 0.5], [2, "", 0.6], [3, "c", 0.7]], "row 2 has no band name"),
        ([[1, "a", 0.5], [2, "a", 0.6], [3, "c", 0.7]], "unique"),
        ([[1, "a", 0.5], [2, "b", "x"], [3, "c", 0.7]], "not a number"),
        ([[1, "a", 0.5], [2, "b", -1], [3, "c", 0.7]], "positive"),
        ([[1, "a", 0.5], [2, "b", ""], [3, "c", 0.7]], "have no wavelength"),
    ],
)
def test_apply_rows_rejects_bad_tables_with_the_fix(rows, message) -> None:
    with pytest.raises(BandTableError, match=message):
        apply_rows(_generic(3), rows, NO_SENSOR)


def test_sensors_relabel_by_order_or_by_name() -> None:
    naip = apply_sensor(_generic(4), "naip")
    assert naip.band_names == ["R", "G", "B", "NIR"] and naip.wavelengths == [
        0.64,
        0.56,
        0.48,
        0.81,
    ]
    assert naip.sensor == "naip"
    renamed = RasterImage(data=np.ones((2, 4, 4), np.float32), band_names=["b8", "B4"])
    s2 = apply_sensor(renamed, "sentinel-2")
    assert s2.band_names == ["B08", "B04"] and s2.wavelengths == [0.842, 0.665]
    with pytest.raises(BandTableError, match="sentinel-2 has 13 bands"):
        apply_sensor(_generic(4), "sentinel-2")


def test_sar_bands_take_the_models_placeholder() -> None:
    image = read_raster(EXAMPLES / "sentinel1_vv_vh.tif")
    assert band_rows(image) == [[1, "VV", ""], [2, "VH", ""]]
    assert apply_sensor(image, "sentinel-1", sar_wavelength=5.405).wavelengths == [5.405, 5.405]
    # Without a placeholder the wavelengths stay unset (the processor then asks for one).
    assert apply_rows(image, band_rows(image), "sentinel-1").wavelengths is None
    with pytest.raises(BandTableError, match="placeholder"):
        apply_rows(image, [[1, "VV", 3.75], [2, "VH", ""]], "sentinel-1")
