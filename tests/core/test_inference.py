"""ChatSession: multi-turn state, streaming, images with their own bands, masks, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from skyeye_testing import make_tiny_model

from skyeye.chat.session import ChatSession, GenerationSettings
from skyeye.io.raster import RasterImage


def _session(model_and_processor, **settings) -> ChatSession:
    model, processor = model_and_processor
    model.eval()
    return ChatSession(model, processor, GenerationSettings(max_new_tokens=4, **settings))


def test_stream_yields_the_answer_and_records_the_turn(tiny_model, rgb_image):
    chat = _session(tiny_model)
    chat.add_image(rgb_image)
    pieces = list(chat.stream("describe this image ."))
    assert chat.last_reply is not None
    assert "".join(pieces).strip() == chat.last_reply.text
    assert [m["role"] for m in chat.history] == ["user", "assistant"]
    assert chat.history[0]["content"].startswith("<image>\n")


def test_images_attach_to_the_next_turn_only(tiny_model, rgb_image):
    chat = _session(tiny_model)
    chat.add_image(rgb_image)
    chat.ask("describe this image .")
    chat.ask("is there water ?")
    assert chat.history[2]["content"] == "is there water ?"
    chat.add_image(rgb_image)
    chat.ask("and now ?")
    assert chat.history[4]["content"].startswith("<image>\n")
    assert len(chat.images) == 2


def test_reset_forgets_images_and_turns(tiny_model, rgb_image):
    chat = _session(tiny_model)
    chat.add_image(rgb_image)
    chat.ask("describe")
    chat.reset()
    assert chat.images == [] and chat.history == [] and chat.last_reply is None


def test_failed_question_leaves_no_half_turn(tiny_model, rgb_image):
    chat = _session(tiny_model)
    chat.processor.max_length = 10
    chat.add_image(rgb_image)
    with pytest.raises(ValueError, match="context holds 10"):
        chat.ask("describe this image .")
    assert chat.history == []
    chat.processor.max_length = None
    chat.ask("describe")  # the pending image still attaches to the next good question
    assert chat.history[0]["content"].startswith("<image>\n")


def test_abandoned_stream_leaves_no_half_turn(tiny_model, rgb_image):
    # A reader that stops early (a closed browser tab) closes the generator after one piece.
    chat = _session(tiny_model)
    chat.settings.max_new_tokens = 40
    chat.add_image(rgb_image)
    stream = chat.stream("describe this image .")
    next(stream)
    stream.close()
    assert chat.history == [] and chat.last_reply is None
    # The image is still pending and attaches, once, to the next question, which works.
    reply = chat.ask("is there water ?")
    assert chat.history[0]["content"] == "<image>\nis there water ?"
    assert chat.history[1] == {"role": "assistant", "content": reply.text}
    assert len(chat.images) == 1


def test_image_without_wavelengths_is_rejected_when_added(tiny_model):
    chat = _session(tiny_model)
    image = RasterImage(
        data=np.ones((2, 8, 8), np.float32), band_names=["a", "b"], wavelengths=None
    )
    with pytest.raises(ValueError, match="wavelength"):
        chat.add_image(image)
    assert chat.images == []


def test_seg_answer_returns_a_mask_on_the_image_grid(tiny_llm_dir, rgb_image):
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    model.eval()
    seg = model.config.seg_token_id
    # Force the answer "[SEG]" then end-of-turn, to exercise the mask path deterministically.
    eos = processor.tokenizer.eos_token_id
    original = model.language_model.generate

    def scripted_generate(*args, **kwargs):
        out = original(*args, **{**kwargs, "max_new_tokens": 1})
        return torch.cat([out[:, :-1], torch.tensor([[seg, eos]])], dim=1)

    model.language_model.generate = scripted_generate
    chat = ChatSession(model, processor, GenerationSettings(max_new_tokens=2))
    chat.add_image(rgb_image)
    reply = chat.ask("segment the lake")
    assert len(reply.masks) == 1
    assert reply.masks[0].shape == rgb_image.data.shape[1:]
    assert reply.masks[0].dtype == bool
    assert reply.mask_images == [0]


def test_grounding_tokens_survive_decoding(tiny_llm_dir):
    _, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    ids = processor.tokenizer("<p> the lake </p> [SEG]", add_special_tokens=False)["input_ids"]
    assert processor.decode(ids).split() == ["<p>", "the", "lake", "</p>", "[SEG]"]


def test_each_image_is_processed_once_whatever_the_turns(tiny_model, rgb_image, monkeypatch):
    chat = _session(tiny_model)
    processed: list[int] = []
    real = chat.processor.image_features

    def counted(images):
        processed.append(len(images))
        return real(images)

    monkeypatch.setattr(chat.processor, "image_features", counted)
    chat.add_image(rgb_image)  # processed here: the band check and the tensors of every turn
    chat.ask("describe this image .")
    chat.ask("is there water ?")
    assert processed == [1]
    second = dataclasses.replace(rgb_image, data=rgb_image.data[:, ::-1].copy())
    chat.add_image(second)
    chat.ask("and now ?")
    assert processed == [1, 1] and chat.images == [rgb_image, second]
    chat.reset()
    chat.add_image(rgb_image)
    assert processed == [1, 1, 1]  # a new conversation does not reuse the old one's tensors


def test_only_pending_images_can_be_replaced(tiny_model, rgb_image):
    chat = _session(tiny_model)
    first = chat.add_image(rgb_image)
    relabelled = RasterImage(
        data=first.data.copy(), band_names=["R", "G", "B"], wavelengths=[0.7, 0.55, 0.45]
    )
    chat.replace_image(first, relabelled)
    assert chat.pending_images == [relabelled]
    chat.ask("describe")
    assert chat.images == [relabelled] and chat.pending_images == []
    with pytest.raises(ValueError, match="not yet sent"):
        chat.replace_image(relabelled, first)
