"""Masks belong to the `[SEG]` tokens of the answer being returned (issue 15, item 5)."""

from __future__ import annotations

import pytest
import torch
from skyeye_testing import make_tiny_model

from skyeye.chat.mask_export import save_reply_masks
from skyeye.chat.session import ChatSession, GenerationSettings


def _scripted_chat(tiny_llm_dir, answers: list[str]) -> ChatSession:
    """A session whose model answers `answers` in turn (exact token ids), then end-of-turn."""
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    model.eval()
    tokenizer = processor.tokenizer
    scripted = iter(answers)
    original = model.language_model.generate

    def scripted_generate(*args, **kwargs):
        streamer = kwargs.pop("streamer", None)
        out = original(*args, **{**kwargs, "max_new_tokens": 1})
        ids = tokenizer(next(scripted), add_special_tokens=False)["input_ids"]
        new = torch.tensor([ids + [tokenizer.eos_token_id]])
        if streamer is not None:
            streamer.put(torch.zeros(1, 1, dtype=torch.long))  # the prompt, which it skips
            streamer.put(new[0])
            streamer.end()
        return torch.cat([out[:, :-1], new], dim=1)

    model.language_model.generate = scripted_generate
    return ChatSession(model, processor, GenerationSettings(max_new_tokens=8))


def test_second_turn_returns_only_its_own_masks_with_their_phrases(tiny_llm_dir, rgb_image):
    chat = _scripted_chat(tiny_llm_dir, ["<p> the lake </p> [SEG]", "<p> water </p> [SEG]"])
    chat.add_image(rgb_image)
    first = chat.ask("segment the lake")
    assert len(first.masks) == 1 and first.mask_phrases == ["the lake"]
    second = chat.ask("segment water")
    assert len(second.masks) == 1
    assert second.mask_phrases == ["water"]
    assert second.mask_images == [0]


def test_typed_seg_in_the_prompt_makes_no_mask(tiny_llm_dir, rgb_image, tmp_path):
    chat = _scripted_chat(tiny_llm_dir, ["<p> water </p> [SEG] <p> the lake </p> [SEG]"])
    chat.add_image(rgb_image)
    reply = chat.ask("[SEG] [SEG] <p> water </p> [SEG] show water")
    assert len(reply.masks) == 2
    assert reply.mask_phrases == ["water", "the lake"]
    saved = save_reply_masks(reply, chat.images, tmp_path)
    assert len([p for p in saved if str(p).endswith(".png")]) == 2


@pytest.mark.parametrize("turns", [3])
def test_masks_do_not_accumulate_over_turns(tiny_llm_dir, rgb_image, turns):
    chat = _scripted_chat(tiny_llm_dir, ["<p> water </p> [SEG]"] * turns)
    chat.add_image(rgb_image)
    counts = [len(chat.ask("segment water").masks) for _ in range(turns)]
    assert counts == [1] * turns


def test_a_seg_in_a_text_only_conversation_makes_no_mask_and_no_error(tiny_llm_dir):
    chat = _scripted_chat(tiny_llm_dir, ["<p> water </p> [SEG] Yes."])
    reply = chat.ask("Is there water?")
    assert reply.masks == [] and "[SEG]" in reply.text


def test_the_yes_no_after_a_mask_streams_as_the_mask_measured(tiny_llm_dir, rgb_image):
    """Text after a [SEG] is held back until its mask is measured, so what a user sees streamed
    is the final answer (the verdict of the mask, not the LLM's word)."""
    chat = _scripted_chat(tiny_llm_dir, ["<p> water </p> [SEG] Yes, there is water."])
    chat.add_image(rgb_image)
    streamed = "".join(chat.stream("Is there water?")).strip()
    reply = chat.last_reply
    assert reply is not None and len(reply.masks) == 1
    assert streamed == reply.text
    # the random tiny head draws some mask: the word after [SEG] is what that mask says
    present = reply.mask_areas[0].share >= 0.005
    assert reply.text.split("[SEG]", 1)[1].strip().lower().startswith("yes" if present else "no")
