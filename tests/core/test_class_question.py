"""The class question (`skyeye.chat.class_question`): a class's own mask drawn on one image of
the conversation, asked of that image alone, the conversation left as it was."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from skyeye_testing import make_tiny_model

from skyeye.chat.class_question import class_reply, class_request
from skyeye.chat.session import ChatSession, GenerationSettings


@pytest.fixture
def chat(tiny_llm_dir) -> ChatSession:
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    model.eval()
    return ChatSession(model, processor, GenerationSettings(max_new_tokens=2))


def test_the_question_names_every_class_as_trained():
    assert class_request(["water"]) == ("\nSegment all water.", "<p>water</p> [SEG]")
    assert class_request(["water", "cloud", "bare land"]) == (
        "\nSegment all water, cloud and bare land.",
        "<p>water</p> [SEG] <p>cloud</p> [SEG] <p>bare land</p> [SEG]",
    )


def test_masks_lie_on_the_asked_image_and_ignore_the_others(chat, rgb_image):
    small = dataclasses.replace(rgb_image, data=rgb_image.data[:, :16, :20].copy())
    chat.add_images([rgb_image, small])
    chat.ask("what changed ?")
    history = [dict(m) for m in chat.messages]

    last = class_reply(chat, ["water", "cloud"])
    assert last.mask_images == [1, 1] and last.mask_phrases == ["water", "cloud"]
    assert all(m.shape == (16, 20) and m.dtype == bool for m in last.masks)
    first = class_reply(chat, ["water"], index=0)
    assert first.mask_images == [0] and first.masks[0].shape == (24, 24)
    assert chat.messages == history  # the conversation is not changed

    # Asked of that image alone: the same masks as in a conversation holding only it.
    chat.reset()
    chat.add_image(small)
    alone = class_reply(chat, ["water", "cloud"])
    assert alone.mask_images == [0, 0]
    for a, b in zip(alone.masks, last.masks, strict=True):
        np.testing.assert_array_equal(a, b)
