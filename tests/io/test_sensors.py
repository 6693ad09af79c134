"""Sensor registry and the wavelength rules DOFA-style towers rely on."""

from __future__ import annotations

import numpy as np
import pytest

from skyeye.io.sensors import (
    REFLECTANCE_RANGE,
    get_sensor,
    list_sensors,
    looks_like_reflectance,
    resolve_wavelengths,
    sensors_matching_bands,
)


def test_registry_lists_the_supported_sensors():
    assert set(list_sensors()) == {
        "sentinel-2",
        "sentinel-1",
        "landsat-5",
        "landsat-7",
        "landsat-8",
        "landsat-9",
        "naip",
        "rgb",
    }
    with pytest.raises(ValueError, match="unknown sensor 'modis'.*sentinel-2"):
        get_sensor("modis")


def test_sentinel2_wavelengths_in_product_order():
    s2 = get_sensor("sentinel-2")
    assert s2.band_names == [
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B8A",
        "B09",
        "B10",
        "B11",
        "B12",
    ]
    assert resolve_wavelengths(["B02", "B03", "B04", "B08"], sensor="sentinel-2") == [
        0.49,
        0.56,
        0.665,
        0.842,
    ]
    assert resolve_wavelengths(["B8A", "b12"], sensor=s2) == [0.865, 2.19]
    assert resolve_wavelengths(["B2", "red"], sensor="sentinel-2") == [0.49, 0.665]  # spellings
    assert s2.default_scaling == "reflectance_10000"


def test_other_sensors():
    assert resolve_wavelengths(["R", "G", "B", "NIR"], sensor="naip") == [0.64, 0.56, 0.48, 0.81]
    assert resolve_wavelengths(["R", "G", "B"], sensor="rgb") == [0.665, 0.56, 0.49]
    l8 = resolve_wavelengths(["B4", "B5", "B10"], sensor="landsat-8")
    assert l8[0] == pytest.approx(0.655) and l8[1] == pytest.approx(0.865) and l8[2] > 10
    assert get_sensor("landsat-9").band_names == get_sensor("landsat-8").band_names
    s1 = get_sensor("sentinel-1")
    assert [b.kind for b in s1.bands] == ["sar", "sar"] and all(
        b.wavelength is None for b in s1.bands
    )


def test_explicit_wavelengths_win_and_must_match_the_band_count():
    assert resolve_wavelengths(["B02", "B03"], sensor="sentinel-2", wavelengths=[0.5, 0.6]) == [
        0.5,
        0.6,
    ]
    with pytest.raises(ValueError, match=r"got 1 wavelengths for 2 bands.*one wavelength"):
        resolve_wavelengths(["a", "b"], wavelengths=[0.5])
    with pytest.raises(ValueError, match=r"between 0\.3 and 30 µm"):
        resolve_wavelengths(["a"], wavelengths=[-1.0])


def test_sar_needs_the_checkpoint_placeholder():
    with pytest.raises(ValueError, match=r"sar_wavelength.*3\.75.*5\.405"):
        resolve_wavelengths(["VV", "VH"], sensor="sentinel-1")
    assert resolve_wavelengths(["VV", "VH"], sensor="sentinel-1", sar_wavelength=3.75) == [
        3.75,
        3.75,
    ]
    assert resolve_wavelengths(["VH"], sensor="sentinel-1", sar_wavelength=5.405) == [5.405]


def test_unknown_band_names_are_named_with_the_sensor_bands():
    with pytest.raises(ValueError, match=r"\['B13', 'QA'\] are not sentinel-2 bands.*B8A"):
        resolve_wavelengths(["B02", "B13", "QA"], sensor="sentinel-2")


def test_no_sensor_and_no_wavelengths_is_an_error():
    with pytest.raises(ValueError, match="pass a sensor"):
        resolve_wavelengths(["band_1", "band_2"])


def test_sensor_matching_is_exact_and_never_by_count():
    assert sensors_matching_bands(["B02", "B8A"]) == ["sentinel-2"]
    both = ["landsat-5", "landsat-7", "landsat-8", "landsat-9"]
    assert sensors_matching_bands(["B2", "B5"]) == both  # TM / ETM+ and OLI numbers
    assert sensors_matching_bands(["B2", "B9"]) == ["landsat-8", "landsat-9"]
    assert sensors_matching_bands(["VV", "VH"]) == ["sentinel-1"]
    assert sensors_matching_bands(["band_1", "band_2", "band_3"]) == []
    assert sensors_matching_bands(["red", "green", "blue"]) == []  # aliases do not pick a sensor


def test_the_reflectance_test_decides_as_its_percentiles_do_at_the_bounds():
    """The shortcut that skips sorting must never change a verdict: arrays whose share of values
    beyond a bound sits just below, at and above the percentiles' 0.5 %, and small ones."""
    rng = np.random.default_rng(0)
    low, high = REFLECTANCE_RANGE

    def by_percentiles(values: np.ndarray) -> bool:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return False
        lo, hi = np.percentile(finite, [0.5, 99.5])
        return bool(low <= lo and hi <= high and hi > 0)

    cases = [np.array([0.3]), np.array([2.0]), np.array([np.nan, 0.5]), np.array([np.nan])]
    for n in (1, 2, 3, 7, 200, 201, 1000, 4001):
        for outside in range(0, 12):
            for value in (high + 0.01, low - 0.01, 5000.0):
                data = rng.uniform(0.0, 1.0, n).astype(np.float32)
                data[: min(outside, n)] = value
                cases.append(rng.permutation(data))
    cases.append(rng.uniform(0, 10000, (13, 64, 64)).astype(np.float32))  # digital numbers
    verdicts = [looks_like_reflectance(c) for c in cases]
    assert verdicts == [by_percentiles(c.ravel()) for c in cases]
    assert True in verdicts and False in verdicts
