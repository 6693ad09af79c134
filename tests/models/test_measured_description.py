"""The real skyeye-tiny describing the bundled Sentinel-1 scene states measured shares or none
(issue 29: it said "the remaining area (about 90%) is other surface" while the water mask
measured 26.7 %)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyeye.grounding.parse import SHARE

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sentinel1_vv_vh.tif"


def test_description_of_the_sentinel1_example_states_only_measured_shares():
    from skyeye.chat.counting import DEFAULT_MASK_CLASSES
    from skyeye.chat.describe import classes_named
    from skyeye.chat.session import load_chat

    chat = load_chat("skyeye-tiny")
    chat.add_image(EXAMPLE)
    reply = chat.ask("Describe this image.")
    stated = [float(m.group(1)) for m in SHARE.finditer(reply.text)]
    measured = {
        p: round(100 * a.share, 1)
        for p, a in zip(reply.mask_phrases, reply.mask_areas, strict=True)
    }
    # every share stated is one a mask measured, and every class it names with a share has a mask
    for value in stated:
        assert value in measured.values(), (reply.text, measured)
    for name in classes_named(reply.text, DEFAULT_MASK_CLASSES):
        assert name in measured or not stated
    assert "90%" not in reply.text or 90.0 in measured.values()
