"""Clouds of a change answer by the spectral label rule (issue 28): the rule itself
(`skyeye.grounding.label_rules.cloud_rule_mask`), how it reads an image from the value scaling
the processor resolves (`skyeye.grounding.clouds`), and the chat's change answer: a white block
pasted into one date is left out and the decoder is not asked for clouds, a per-band stretch
falls back to the decoder's clouds (the tiny model with scripted decoders, fast); the same with
the bundled model on the bundled examples, and a SAR pair leaves nothing out for cloud (slow:
~2 s each with one torch thread, ~30 s with pytest's two on this shared machine)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from skyeye_testing import change_chat, two_dates

import skyeye.chat.transitions as transitions
from skyeye.grounding.clouds import (
    CLOUDS_BY_RULE,
    CLOUDS_NOT_APPLICABLE,
    cloud_rule,
    cloud_rule_for,
    clouds_method,
)
from skyeye.grounding.label_rules import cloud_rule_mask
from skyeye.io.raster import RasterImage, read_raster
from skyeye.io.sensors import get_sensor
from skyeye.processing.image_processor import FixedScaling, SkyEyeImageProcessor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
S2_BANDS = get_sensor("sentinel-2").bands
S2_WAVES = [float(b.wavelength) for b in S2_BANDS]  # type: ignore[arg-type]
LANDSAT_NO_BLUE = [0.561, 0.655, 0.865, 1.609]  # green, red, NIR, SWIR1


def _s2(data: np.ndarray) -> RasterImage:
    return RasterImage(data=data.astype(np.float32), band_names=[b.name for b in S2_BANDS],
                       wavelengths=S2_WAVES, sensor="sentinel-2")  # fmt: skip


def test_the_rule_finds_almost_no_cloud_on_the_clear_example():
    img = read_raster(EXAMPLES / "sentinel2_berlin_l1c.tif")
    rule = cloud_rule(SkyEyeImageProcessor(), img)
    assert rule.scale == pytest.approx(1e-4)  # Sentinel-2 digital numbers
    mask, text = cloud_rule_mask(img, rule.scale)
    assert mask.shape == img.data.shape[1:]
    assert mask.mean() < 0.02  # measured: 0.007 % (19 of 262,144 px)
    assert "cirrus B10" in text and "NDSI(B03, B11)" in text


def test_a_white_block_is_cloud_and_a_snow_block_is_not():
    rng = np.random.default_rng(0)
    land = np.full((13, 48, 48), 900.0) + rng.uniform(-50, 50, size=(13, 48, 48))
    land[7] = land[8] = 3000.0  # NIR: vegetated land
    land[10] = 20.0  # cirrus band: clear
    data = land.copy()
    data[:12, 5:20, 5:20] = 8000.0  # a bright white cloud (SWIR bright too)
    data[:10, 30:45, 30:45] = 8000.0  # snow: bright white in the visible ...
    data[11:, 30:45, 30:45] = 1000.0  # ... dark in the SWIR (NDSI 0.78)
    mask, _ = cloud_rule_mask(_s2(data), 1e-4)
    cloud = np.zeros((48, 48), bool)
    cloud[5:20, 5:20] = True
    assert (mask == cloud).all()
    nodata = data.copy()
    nodata[:, :, :10] = np.nan
    assert not cloud_rule_mask(_s2(nodata), 1e-4)[0][:, :10].any()  # no data is not cloud


def test_the_rule_reads_the_scaling_the_processor_resolves():
    assert cloud_rule_for("reflectance_10000", "sentinel-2", S2_WAVES).scale == 1e-4
    assert cloud_rule_for("reflectance", None, S2_WAVES).scale == 1.0
    photo = cloud_rule_for("uint8", "naip", [0.64, 0.56, 0.48, 0.86])  # 8 bits: no reflectance
    assert not photo.applies and "uint8" in photo.why
    assert cloud_rule_for("sar_db", "sentinel-1", None).sar
    assert cloud_rule_for("minmax", "sentinel-1", None).sar  # radar, whatever the scaling
    minmax = cloud_rule_for("minmax", "landsat-8", S2_WAVES)
    assert not minmax.applies and "minmax" in minmax.why
    no_blue = cloud_rule_for("reflectance", "landsat-8", LANDSAT_NO_BLUE)
    assert not no_blue.applies and no_blue.why == "no blue band"
    # "auto" is the processor's own rule: a Sentinel-2 file already in 0-1 reflectance is read
    # x 1, its digital numbers x 1e-4, and a scene's fixed scaling wins over the window's values.
    proc = SkyEyeImageProcessor()
    dn = _s2(np.full((13, 8, 8), 1500.0))
    assert cloud_rule(proc, dn).scale == 1e-4
    assert cloud_rule(proc, _s2(dn.data / 1e4)).scale == 1.0
    assert cloud_rule(proc, dn, FixedScaling("minmax", ((0.0, 1.0),) * 13)).scale is None
    sar, rule, none = (cloud_rule_for(*a) for a in (("sar_db", None, None),
                       ("reflectance", None, CHANGE_RGB), ("minmax", None, CHANGE_RGB)))  # fmt: skip
    assert clouds_method([sar, sar]) == CLOUDS_NOT_APPLICABLE
    assert clouds_method([sar, rule]) == CLOUDS_BY_RULE
    assert clouds_method([rule, none]) is None


CHANGE_RGB = [0.49, 0.56, 0.665]


def test_tiny_chat_leaves_a_white_block_out_without_asking_the_decoder(tiny_llm_dir, asked):
    """The scripted decoder draws "water" for any phrase: were it asked for cloud, the new lake
    would be left out as cloud. The rule leaves out the white block only."""
    session = change_chat(tiny_llm_dir)
    known = ("water", "cloud", "cloud shadow")
    session.settings = dataclasses.replace(session.settings, mask_classes=known)
    session.processor.image_processor.value_scaling = "reflectance"
    before, after, _ = two_dates(nodata_rows=0)
    before.data /= 255  # 0-1 reflectance
    after.data /= 255
    after.data[:, 50:60, 50:60] = 0.94  # bright and white in every band
    reply = _pair(session, before, after)
    t = reply.transitions
    assert t.cloud_method == CLOUDS_BY_RULE
    assert t.excluded_share == pytest.approx(100 / 64**2)
    assert not t.compared[50:60, 50:60].any()
    assert asked == [["water"], ["water"]]  # no cloud phrase
    water = t.classes[0]
    assert water.gained.pixels > 300  # the lake (disc of radius 12 px) is measured, not cloud
    # 8-bit values (or a per-band stretch) are no reflectance: no clouds masked, and said; the
    # decoder, which knows "cloud" here, is not asked for it (its clouds were wrong on clear
    # scenes).
    asked.clear()
    session.processor.image_processor.value_scaling = "uint8"
    before.data *= 255
    after.data *= 255
    reply = _pair(session, before, after)
    assert reply.transitions.cloud_method is None
    assert asked == [["water"]] * 2
    assert "clouds could not be masked" in reply.text
    assert reply.transitions.classes[0].gained.pixels > 300  # the lake, not left out as cloud


@pytest.fixture(scope="module")
def chat():
    from skyeye.chat.session import load_chat

    return load_chat("skyeye-tiny")


@pytest.fixture
def asked(monkeypatch):
    """The phrases the transitions ask the mask decoder, per date."""
    calls: list[list[str]] = []
    real = transitions.class_masks

    def spy(session, index, phrases):
        calls.append(list(phrases))
        return real(session, index, phrases)

    monkeypatch.setattr(transitions, "class_masks", spy)
    return calls


def _pair(chat, before: RasterImage, after: RasterImage):
    chat.reset()
    chat.add_image(dataclasses.replace(before, datetime="2018-05-01"))
    chat.add_image(dataclasses.replace(after, datetime="2020-05-01"))
    return chat.ask("What changed?")


def _crop(img: RasterImage, n: int, bands: list[int] | None = None) -> RasterImage:
    data = img.data[bands] if bands is not None else img.data
    waves = img.wavelengths if bands is None else [img.wavelengths[b] for b in bands]
    names = img.band_names if bands is None else [img.band_names[b] for b in bands]
    return dataclasses.replace(img, data=data[:, :n, :n].copy(), source_shape=(n, n),
                               wavelengths=waves, band_names=names)  # fmt: skip


@pytest.mark.slow
def test_a_white_block_on_one_date_is_left_out_and_the_decoder_not_asked(chat, asked):
    example = _crop(read_raster(EXAMPLES / "sentinel2_berlin_l1c.tif"), 128)
    cloudy = dataclasses.replace(example, data=example.data.copy())
    cloudy.data[:, 40:72, 40:72] = 9000.0  # reflectance 0.9 in every band
    reply = _pair(chat, example, cloudy)
    t = reply.transitions
    assert t.cloud_method == CLOUDS_BY_RULE
    assert not t.compared[40:72, 40:72].any()  # the block is not compared
    block = 32 * 32 / 128**2
    assert block <= t.excluded_share < block + 0.01  # and little else is
    assert "left out (cloud by a spectral test, or no data, in either date)" in reply.text
    assert len(asked) == 2 and all(a for a in asked)  # both dates, the transition classes ...
    assert not any(p in transitions.CLOUD_PHRASES for a in asked for p in a)  # ... no cloud


@pytest.mark.slow
def test_a_sar_pair_leaves_nothing_out_for_cloud(chat, asked):
    s1 = read_raster(EXAMPLES / "sentinel1_vv_vh.tif")
    later = dataclasses.replace(s1, data=s1.data.copy())
    later.data[:, 30:60, 30:60] = -22.0  # a dark (flooded) patch
    reply = _pair(chat, s1, later)
    t = reply.transitions
    assert t.cloud_method == CLOUDS_NOT_APPLICABLE and t.cloud_masked
    nodata = 1.0 - float((s1.valid_mask & later.valid_mask).mean())
    assert t.excluded_share == pytest.approx(nodata)  # only no data is left out
    assert "could not be masked" not in reply.text and "cloud by" not in reply.text
    assert not any(p in transitions.CLOUD_PHRASES for a in asked for p in a)


@pytest.mark.slow
def test_without_a_blue_band_no_cloud_is_masked_and_it_is_said(chat, asked):
    # Green, red, NIR, SWIR1 of the example, no sensor: "auto" is a per-band stretch (minmax).
    example = read_raster(EXAMPLES / "sentinel2_berlin_l1c.tif")
    four = dataclasses.replace(_crop(example, 128, [2, 3, 7, 11]), sensor=None)
    later = dataclasses.replace(four, data=four.data.copy())
    later.data[:, 30:60, 30:60] = four.data[:, :30, :30]  # something changed
    reply = _pair(chat, four, later)
    assert reply.transitions is not None and reply.transitions.cloud_method is None
    assert reply.transitions.excluded_share == 0
    assert asked and not any(p in transitions.CLOUD_PHRASES for a in asked for p in a)
    assert "could not be masked" in reply.text
