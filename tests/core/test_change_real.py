"""The change answer of the embedded model on a real multi-date pair (Landsat 2000 / 2020 of
Pucallpa, `../shared/data/opengeos-naip-landsat`: a meandering river, cleared forest): the measured
figures hold together. Slow; skipped while the bundled skyeye-tiny has no change decoder
(`config.mask_change`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyeye.bundled import resolve_model_folder
from skyeye.chat.measured import PRESENT_MIN_SHARE

pytestmark = pytest.mark.slow

MODEL = "skyeye-tiny"
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "opengeos-naip-landsat"
PAIR = [DATA / "landsat" / "2000.tif", DATA / "landsat" / "2020.tif"]
#: The files' bands (their README): SWIR1, NIR, red, green, in µm.
WAVELENGTHS = [1.65, 0.835, 0.66, 0.56]


def _has_change_decoder(model: str) -> bool:
    config = json.loads((resolve_model_folder(model) / "config.json").read_text())
    return bool(config.get("mask_change"))


@pytest.mark.skipif(not all(p.is_file() for p in PAIR), reason="Landsat pair not in ../shared/data")
@pytest.mark.skipif(
    not _has_change_decoder(MODEL), reason=f"{MODEL} has no change decoder (mask_change) yet"
)
def test_real_pair_transitions_lie_inside_the_change_mask():
    from skyeye.chat.change_answer import ask_change, change_summary
    from skyeye.chat.multi_date import prepare_dated_images
    from skyeye.chat.readable import render_readable
    from skyeye.chat.reply_geo import reply_extension
    from skyeye.chat.session import load_chat
    from skyeye.io.raster import read_raster

    session = load_chat(MODEL)
    size = session.settings.read_size
    read = [read_raster(p, wavelengths=WAVELENGTHS, max_size=size) for p in PAIR]
    prepared = prepare_dated_images(read)  # undated, both georeferenced: aligned all the same
    for image in prepared.images:
        session.add_image(image)
    reply = ask_change(session, "What changed between these dates?")
    change = change_summary(reply)
    assert change is not None and reply.mask_pairs[change["mask"]] == (0, 1)
    # Full overlap, so the only note is the one every undated pair gets: the order was assumed.
    assert change["overlap"] == 1.0
    assert change["note"] is not None and "dates are not known" in change["note"]
    area = change["area_m2"]
    # Every transition is measured inside the change mask, on the same compared pixels.
    for t in change["transitions"]:
        assert t["gained_m2"] <= area * 1.0001 and t["lost_m2"] <= area * 1.0001
    assert change["changed"] == (change["fraction_of_compared_area"] >= PRESENT_MIN_SHARE)
    # The river moved and forest was cleared in 20 years: the installed change decoder measured
    # 143 km², 6.8 % of the compared area (2026-12-06, the third decoder; no decoder clouds).
    assert change["changed"]
    geojson = reply_extension(reply, session.images)["change"]["geojson"]
    # The polygons (4-px sieve) hold the mask's area to within a few per cent.
    assert abs(geojson["properties"]["polygon_area_m2"] - area) <= 0.05 * area
    sentence = render_readable(reply.text)
    assert sentence.startswith(("Yes — ", "No — ")) and "mask 1" in sentence
