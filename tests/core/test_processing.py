"""Processor: chat template, <image> expansion, label masking, context checks."""

from __future__ import annotations

import pytest
import torch

from skyeye.processing.processor import IGNORE_INDEX, PromptTooLongError


def test_each_image_placeholder_expands_to_num_image_tokens(tiny_model, rgb_image):
    model, processor = tiny_model
    messages = [{"role": "user", "content": "<image>\n<image>\ndescribe this image ."}]
    batch = processor(messages, [rgb_image, rgb_image])
    n = int((batch["input_ids"] == processor.image_token_id).sum())
    assert n == 2 * model.config.num_image_tokens
    assert len(batch["pixel_values"]) == 2
    assert batch["pixel_values"][0].shape == (3, 16, 16)
    assert torch.allclose(batch["wavelengths"][0], torch.tensor([0.665, 0.56, 0.49]))


def test_placeholder_count_must_match_images(tiny_model, rgb_image):
    _, processor = tiny_model
    with pytest.raises(ValueError, match="1 <image> placeholder.*2 image"):
        processor([{"role": "user", "content": "<image> describe"}], [rgb_image, rgb_image])


def test_labels_supervise_only_assistant_turns_and_their_end_token(tiny_model, rgb_image):
    _, processor = tiny_model
    messages = [
        {"role": "system", "content": "you are skyeye ."},
        {"role": "user", "content": "<image>\nis there water in this image ?"},
        {"role": "assistant", "content": "yes there is water ."},
        {"role": "user", "content": "how much of the image is forest ?"},
        {"role": "assistant", "content": "about a third ."},
    ]
    example = processor.build_training_example(messages, [rgb_image])
    ids, labels = example["input_ids"], example["labels"]
    supervised = processor.tokenizer.decode(ids[labels != IGNORE_INDEX])
    assert (
        supervised.split() == "yes there is water . <|im_end|> about a third . <|im_end|>".split()
    )
    # No image token and no user text is ever a target.
    assert not (labels == processor.image_token_id).any()
    assert "forest" not in supervised


def test_prompt_longer_than_context_is_a_clear_error(tiny_model):
    _, processor = tiny_model
    processor.max_length = 20
    with pytest.raises(PromptTooLongError, match="context holds 20"):
        processor([{"role": "user", "content": "describe this image . " * 10}])


def test_processor_round_trip(tiny_model, rgb_image, tmp_path):
    _, processor = tiny_model
    processor.save_pretrained(tmp_path)
    from skyeye.processing.processor import SkyEyeProcessor

    loaded = SkyEyeProcessor.from_pretrained(tmp_path)
    messages = [{"role": "user", "content": "<image>\ndescribe this image ."}]
    a, b = processor(messages, [rgb_image]), loaded(messages, [rgb_image])
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert torch.equal(a["pixel_values"][0], b["pixel_values"][0])
    assert loaded.image_token_id == processor.image_token_id
