"""Change answers in the chat: which `[SEG]` is a change `[SEG]` (one rule with the records), and
the class transitions measured on the masks, clouds and no data of either date left out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize
from shapely.geometry import Point
from skyeye_testing import NdwiChangeHead, WaterHead, make_tiny_model, two_dates

from skyeye.chat.change_seg import change_seg_index, is_change_phrase, latest_image_group
from skyeye.chat.session import ChatSession, GenerationSettings
from skyeye.chat.transitions import measure_transitions

WAVES = [0.49, 0.56, 0.665, 0.842]
PIXEL_M = 10.0
TRANSFORM = Affine(PIXEL_M, 0, 500000.0, 0, -PIXEL_M, 5800000.0)
CRS_UTM = CRS.from_epsg(32633)


def test_change_phrases_are_those_the_change_records_write():
    from instruct_data.convert.levir import MCI_CLASSES

    written = ["changed land cover", "urban change", "changed areas", "new water", "lost forest"]
    written += list(MCI_CLASSES.values())
    assert all(is_change_phrase(p) for p in written)
    assert all(is_change_phrase(p) for p in ("water gained", "buildings appeared", "Change"))
    for plain in ("water", "the lake", "artificial surface", "cloud", None, "newton road"):
        assert not is_change_phrase(plain)


def test_change_seg_index_needs_two_images_on_one_grid_and_a_change_phrase():
    text = "<p>water</p> [SEG] and <p>new water</p> [SEG]"
    assert change_seg_index(text, [0, 1], [(8, 8), (8, 8)], True) == [1, (0, 1)]
    assert change_seg_index(text, [2, 3, 4], [(8, 8)] * 3, True) == [4, (2, 4)]
    assert change_seg_index(text, [0, 1], [(8, 8), (8, 8)], False) is None  # no change decoder
    assert change_seg_index(text, [1], [(8, 8)], True) is None  # one image
    assert change_seg_index(text, [0, 1], [(8, 8), (9, 8)], True) is None  # not aligned
    assert change_seg_index("<p>water</p> [SEG]", [0, 1], [(8, 8)] * 2, True) is None
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text"}]},
        {"role": "assistant", "content": "..."},
        {"role": "user", "content": [{"type": "text", "text": "and now?"}]},
    ]
    assert latest_image_group(messages, 3) == [1, 2]  # a follow-up asks about the last pair


def _disc(radius_px: float, centre=(32.0, 30.0), shape=(64, 64)) -> tuple[np.ndarray, float]:
    """A rasterised disc on TRANSFORM and its true area in m²."""
    x, y = TRANSFORM @ (centre[1], centre[0])
    disc = Point(x, y).buffer(radius_px * PIXEL_M, 256)
    mask = rasterize([(disc, 1)], out_shape=shape, transform=TRANSFORM).astype(bool)
    return mask, float(disc.area)


def test_measure_transitions_gained_lost_and_clouds_left_out():
    gained_true, area = _disc(12)
    water_before = np.zeros((64, 64), bool)
    water_before[:, :6] = True  # a river that dried up
    water_after = gained_true.copy()
    change = gained_true | water_before
    valid = np.ones((64, 64), bool)
    t = measure_transitions(
        change,
        {"water": water_before},
        {"water": water_after},
        valid,
        transform=TRANSFORM,
        crs=CRS_UTM,
    )[0]
    assert abs(t.gained.m2 - area) / area < 0.05
    assert t.lost.m2 == pytest.approx(64 * 6 * PIXEL_M**2)
    cloud = np.zeros((64, 64), bool)
    cloud[:, 30:] = True  # a cloud over half the disc on one date: those pixels do not count
    clear = measure_transitions(
        change,
        {"water": water_before},
        {"water": water_after},
        valid & ~cloud,
        transform=TRANSFORM,
        crs=CRS_UTM,
    )[0]
    assert clear.gained.pixels == int((gained_true & ~cloud).sum())
    assert clear.gained.m2 < 0.6 * t.gained.m2


def test_a_change_answer_gives_the_measured_transitions(tiny_llm_dir):
    model, processor = make_tiny_model(
        tiny_llm_dir,
        use_mask_head=True,
        mask_head_hidden_size=32,
        mask_decoder="hires",
        mask_change=True,
        image_processor_kwargs={"hires_size": 64, "value_scaling": "uint8"},
    )
    model.mask_head, model.change_head = WaterHead(), NdwiChangeHead()
    model.eval()
    tokenizer = processor.tokenizer
    tokenizer.add_tokens(["gained"])  # the tiny word-level vocabulary has no change word
    model.language_model.resize_token_embeddings(
        max(len(tokenizer), model.config.text_config.vocab_size)
    )
    answer = tokenizer("<p>water gained</p> [SEG] Water appeared.", add_special_tokens=False)
    scripted = torch.tensor([answer["input_ids"] + [tokenizer.eos_token_id]])

    def generate(*args, input_ids=None, streamer=None, **kwargs):
        if streamer is not None:
            streamer.put(input_ids.cpu())
            streamer.put(scripted[0])
            streamer.end()
        return torch.cat([input_ids, scripted], dim=1)

    model.language_model.generate = generate
    # The scripted decoder draws water for any phrase: it "knows" water only (no cloud to mask).
    settings = GenerationSettings(max_new_tokens=20, mask_classes=("water",))
    session = ChatSession(model, processor, settings)
    before, after, area = two_dates()
    session.add_image(before)
    session.add_image(after)
    # Not a question the chat reads as a change question (skyeye.chat.change_answer forces those):
    # the LLM's own change phrase still gets the change decoder and the transitions.
    reply = session.ask("Show the water there is now.")
    assert reply.mask_pairs == [(0, 1)] and reply.mask_images == [1]
    water = next(t for t in reply.transitions.classes if t.name == "water")
    disc_inside = _disc(12)[0][4:].sum() / _disc(12)[0].sum()  # the no-data rows cut the disc
    assert abs(water.gained.m2 - area * disc_inside) / (area * disc_inside) < 0.05
    assert water.lost.pixels == 0
    assert reply.transitions.excluded_share == pytest.approx(4 / 64)
    assert "water gained" in reply.text and "water lost 0 m²" in reply.text
    assert "6.2% of the area (no data in either date) left out" in reply.text
    assert "clouds could not be masked" in reply.text
    # A plain mask question about two dates stays a mask on one date: no transitions.
    answer = tokenizer("<p>water</p> [SEG]", add_special_tokens=False)
    scripted = torch.tensor([answer["input_ids"] + [tokenizer.eos_token_id]])
    plain = session.ask("Show the water in the second image.")
    assert plain.mask_pairs == [None] and plain.transitions is None
    assert "Measured on the masks" not in plain.text


def test_a_transition_is_said_as_its_area_or_its_share_and_a_few_pixels_never_as_zero():
    from skyeye.chat.transitions import transition_amount

    assert transition_amount(31_200.0, 0.02) == "3.12 ha"
    assert transition_amount(None, 0.05) == "5.0 % of the compared area"
    # A few pixels of a large grid: one decimal would print "0.0 %" for a class that did move.
    assert transition_amount(None, 0.0002) == "< 0.1 % of the compared area"
    assert transition_amount(None, 0.0) == "0.0 % of the compared area"


def test_a_general_answer_names_the_class_most_of_a_small_change_is():
    """On a whole tile 0.5 % of the compared area is 6,000 ha: a new lake that is most of what
    changed must still be named, a class that is a sliver of the change must not."""
    from skyeye.chat.transitions import PART_MIN_PIXELS, named_in_general
    from skyeye.scene.change_writer import TransitionTally
    from skyeye.scene.stitch import INSIDE

    size = 1000
    change = np.zeros((size, size), bool)
    change[100:160, 100:160] = True  # 3,600 px: 0.36 % of the grid, under presence's 0.5 %
    before = np.zeros((2, size, size), np.float32)  # water, vegetation on the first date
    after = np.zeros_like(before)
    after[0, 100:145, 100:160] = 1.0  # water gained on 2,700 px: 75 % of the change
    before[1, 100:101, 100:160] = 1.0  # vegetation lost on 60 px: 1.7 % of the change
    blended = np.concatenate([change[None].astype(np.float32), before, after])
    mask = np.where(change, INSIDE, 0).astype(np.uint8)
    names = ["water", "vegetation"]
    tally = TransitionTally(names, names, Affine.identity(), None)
    tally(0, blended, np.ones((size, size), bool), mask)
    said = {c["name"]: c["said"] for c in tally.figures(general=True)}
    assert said == {"water": True, "vegetation": False}
    assert all(c["said"] for c in tally.figures(general=False))  # a named class is always said
    # On a chat-sized image the rule is presence's alone: 0.5 % of the compared pixels.
    chat_px = 512 * 512
    assert named_in_general(1311, 1311, chat_px) and not named_in_general(1300, 1300, chat_px)
    assert not named_in_general(PART_MIN_PIXELS - 1, PART_MIN_PIXELS, 10**8)  # all the change
    assert not named_in_general(0, 400, 160_000)
