"""Shares and areas in answers are the measured ones (`skyeye.chat.measured`, `ChatSession`)."""

from __future__ import annotations

import numpy as np
import torch
from affine import Affine
from rasterio.crs import CRS
from skyeye_testing import make_tiny_model

from skyeye.chat.measured import PRESENT_MIN_SHARE, asks_mainly, format_area, state_measured
from skyeye.chat.session import ChatSession
from skyeye.grounding.geo import MaskArea
from skyeye.io.raster import RasterImage


def test_stated_share_and_area_become_the_measured_ones():
    area = MaskArea(share=0.1234, pixels=1234, m2=456_000.0)
    text, note = state_measured(
        "Water covers about 30% of the image, some 12 ha (0.5 km2).", [area], ["water"]
    )
    assert text == "Water covers about 12.3% of the image, some 45.6 ha (0.46 km2)."
    assert note == "(measured on the mask: water 45.6 ha, 12.3% of the valid pixels)"


def test_no_rewrite_when_ambiguous_or_not_georeferenced():
    a = MaskArea(share=0.5, pixels=10, m2=100.0)
    text = "The lake is 20 percent and the river 3 percent."
    assert state_measured(text, [a, a]) == (text, "")
    plain, note = state_measured("About 20 percent is water.", [MaskArea(0.25, 5, None)])
    assert plain == "About 25.0% is water." and note == ""


def test_yes_no_after_the_mask_is_the_masks_verdict():
    empty, some = MaskArea(0.0, 0, None), MaskArea(0.2, 820, 8.2e5)
    # "it looks, then answers": the word after [SEG] follows the mask
    text, _ = state_measured(
        "<p>water</p> [SEG] Yes, there is water in the north.", [empty], ["water"]
    )
    assert text == "<p>water</p> [SEG] No, there is no water."
    text, note = state_measured("<p>water</p> [SEG] No.", [some], ["water"])
    assert text == "<p>water</p> [SEG] Yes, there is water." and "20.0%" in note
    # agreeing answers are kept word for word
    kept = "<p>water</p> [SEG] Yes, there is water in the north."
    assert state_measured(kept, [some], ["water"])[0] == kept
    # the threshold: a few stray pixels are not "present"
    stray = MaskArea(PRESENT_MIN_SHARE / 2, 3, None)
    assert state_measured("<p>cloud</p> [SEG] Yes.", [stray], ["cloud"])[0].endswith(
        "No, there is no cloud."
    )
    # a yes/no before the mask is not the mask's to change
    before = "Yes, here it is: <p>water</p> [SEG]."
    assert state_measured(before, [empty], ["water"])[0] == before


def test_mainly_asks_for_the_larger_part_not_for_any():
    # EuroSAT's "Is this image mainly sea or lake?": a mask on a fifth of the image is water
    # present, but not mainly water.
    fifth, most = MaskArea(0.2, 820, None), MaskArea(0.76, 3100, None)
    assert asks_mainly("Is this image mainly sea or lake? Answer yes or no.")
    assert asks_mainly("Is the scene dominated by forest?") and not asks_mainly("Is there water?")
    text, _ = state_measured("<p>water</p> [SEG] Yes.", [fifth], ["water"], mainly=True)
    assert text == "<p>water</p> [SEG] No, it is not mainly water."
    text, _ = state_measured("<p>forest</p> [SEG] No.", [most], ["forest"], mainly=True)
    assert text == "<p>forest</p> [SEG] Yes, it is mainly forest."
    assert state_measured("<p>water</p> [SEG] Yes.", [fifth], ["water"])[0].endswith("Yes.")


def test_format_area_units():
    assert format_area(850.0) == "850 m²"
    assert format_area(456_000.0) == "45.6 ha"
    assert format_area(3.2e9) == "3,200 km²"


def test_session_reply_carries_the_measured_area(tiny_llm_dir):
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    model.eval()
    session = ChatSession(model, processor)
    data = np.random.default_rng(0).uniform(0, 255, size=(3, 24, 24)).astype(np.float32)
    data[:, :, :4] = np.nan  # nodata strip: never counted
    image = RasterImage(
        data=data,
        band_names=["R", "G", "B"],
        wavelengths=[0.665, 0.56, 0.49],
        crs=CRS.from_epsg(32633),
        transform=Affine(10.0, 0, 400000.0, 0, -10.0, 5800000.0),
    )
    session.add_image(image)
    inputs = processor([{"role": "user", "content": "<image>\nsegment the lake"}], session.images)
    seg = processor.tokenizer.convert_tokens_to_ids("[SEG]")
    reply = session._reply("<p>the lake</p> [SEG]", inputs, torch.tensor([[seg]]))
    (mask,), (area,) = reply.masks, reply.mask_areas
    inside = mask[:, 4:]
    assert area.pixels == int(inside.sum())
    assert area.share == inside.sum() / inside.size
    assert area.m2 == inside.sum() * 100.0
