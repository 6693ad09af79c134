"""Answers read as sentences (skyeye.chat.readable): the grammar's cases, and a stream whose
pieces add up to the readable answer while the conversation keeps the raw grammar."""

from __future__ import annotations

import numpy as np
import pytest
from skyeye_testing import segmenting_chat

from skyeye.chat.readable import _plain_prefix, readable_stream, render_readable


@pytest.mark.parametrize(
    ("raw", "readable"),
    [
        # looks-first yes/no with the chat's measured note (the example)
        (
            "<p>water</p> [SEG] Yes. (measured on the mask: water 275 ha, 10.5% of the valid "
            "pixels)",
            "Yes — water covers 275 ha (10.5 % of the valid pixels), mask 1.",
        ),
        (
            "<p>water</p> [SEG] No, there is no water. (measured on the mask: water 12 m², 0.1% "
            "of the valid pixels)",
            "No, there is no water — water covers 12 m² (0.1 % of the valid pixels), mask 1.",
        ),
        # looks-first without a georeference (no note): the mask is named at the end
        ("<p>water</p> [SEG] Yes.", "Yes (mask 1)."),
        (
            "<p>water</p> [SEG] There are 3 water bodies larger than 1 ha.",
            "There are 3 water bodies larger than 1 ha (mask 1).",
        ),
        ("<p>water</p> [SEG]", "water (mask 1)."),
        # several masks, named inline
        ("<p>water</p> [SEG] and <p>cloud</p> [SEG].", "water (mask 1) and cloud (mask 2)."),
        (
            "Here is the harbour: <p>harbour</p> [SEG] and a bare [SEG].",
            "Here is the harbour: harbour (mask 1) and a bare (mask 2).",
        ),
        # boxes with phrases, several boxes, a rotated one
        (
            "<p>lake</p> {<10><20><30><40>} and <p>ship</p> {<1><2><3><4>}{<5><6><7><8>|<15>}",
            "lake [10, 20, 30, 40] and ship [1, 2, 3, 4], [5, 6, 7, 8] rotated 15° (boxes: left, "
            "top, right, bottom, in % of the image's width and height).",
        ),
        (
            "The largest water region is at {<0><50><40><100>}.",
            "The largest water region is at [0, 50, 40, 100] (boxes: left, top, right, bottom, "
            "in % of the image's width and height).",
        ),
        # the measured box answer: the phrase said once, the figures and legend in one bracket
        (
            "<p>water</p> [SEG] <p>water</p> {<10><4><81><58>} (measured on the mask: water "
            "273 ha, 10.4% of the valid pixels)",
            "water (mask 1) [10, 4, 81, 58] (water covers 273 ha, 10.4 % of the valid pixels; "
            "boxes: left, top, right, bottom, in % of the image's width and height).",
        ),
        # the legend shares the mask's bracket
        (
            "<p>lake</p> [SEG] The lake is at {<1><2><30><40>}.",
            "The lake is at [1, 2, 30, 40] (mask 1; boxes: left, top, right, bottom, in % of the "
            "image's width and height).",
        ),
        # no grounding at all: unchanged
        (
            "The image shows farmland (40%), in the north.",
            "The image shows farmland (40%), in the north.",
        ),
        # an ellipsis is kept as written (it read ",." when stops were collapsed)
        (
            "I cannot count aircraft (it outlines water, cultivated land, ...), and no more.",
            "I cannot count aircraft (it outlines water, cultivated land, ...), and no more.",
        ),
        # an answer cut by a stop string / the token limit mid-token
        ("There is water <p>wat", "There is water"),
        ("A lake at {<10><20><3", "A lake at"),  # no whole box: no legend
        ("Yes [SE", "Yes"),
    ],
)
def test_grammar_cases_read_as_sentences(raw, readable):
    assert render_readable(raw) == readable


def test_plain_words_stream_and_grounding_waits():
    assert _plain_prefix("The image shows ") == "The image shows "
    assert _plain_prefix("The image sho") == "The image "  # a word may still grow
    assert _plain_prefix("Water covers 1") == "Water covers "  # figures may be rewritten
    assert _plain_prefix("<p>water</p> [SEG] Yes") == ""


def _chat(tiny_llm_dir):
    chat = segmenting_chat(tiny_llm_dir, max_new_tokens=8)
    rng = np.random.default_rng(1)
    from skyeye.io.raster import RasterImage

    chat.add_image(
        RasterImage(
            data=rng.uniform(0, 255, (3, 24, 24)).astype(np.float32),
            band_names=["R", "G", "B"],
            wavelengths=[0.665, 0.56, 0.49],
        )
    )
    return chat


@pytest.mark.parametrize(
    "prompt", ["Is there water in this image?", "How many water bodies are there?"]
)
def test_streamed_pieces_add_up_to_the_readable_answer(tiny_llm_dir, prompt):
    chat = _chat(tiny_llm_dir)
    pieces = list(readable_stream(chat, prompt))
    raw = chat.last_reply.text
    assert "".join(pieces) == render_readable(raw)
    # the conversation keeps the model's grammar, which later turns see
    assert chat.messages[-1]["content"] == raw
    if prompt.startswith("How many"):
        assert raw.startswith("<p>water</p> [SEG]")
        assert "[SEG]" not in "".join(pieces)


@pytest.mark.parametrize(
    "raw",
    [
        "Water covers about 20% of the image. The rest is fields.",
        "The remaining area (about 90%) is other surface.",
        "It is a lake.\nWater covers roughly 3 ha near the shore.",
        "The image is about water.",
    ],
)
def test_every_streamed_prefix_of_a_description_stays_a_prefix_of_its_restated_text(raw):
    from skyeye.chat.describe import state_description
    from skyeye.grounding.geo import MaskArea

    final = render_readable(
        state_description(raw, {"water": MaskArea(share=0.267, pixels=10, m2=None)}, ("water",))
    )
    for end in range(1, len(raw) + 1):
        shown = _plain_prefix(raw[:end], whole_sentences=True)
        assert final.startswith(shown), (raw[:end], shown, final)
