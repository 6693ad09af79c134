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
    chat.require_image = False  # as the blind baseline asks (a session refuses this by default)
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


class _ForceTokens:
    """A logits processor that makes greedy decoding emit `ids` in order (then end-of-turn)."""

    def __init__(self, ids: list[int], prompt_length: int) -> None:
        self.ids, self.prompt_length = ids, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_length
        if step < len(self.ids):
            forced = torch.full_like(scores, float("-inf"))
            forced[:, self.ids[step]] = 0.0
            return forced
        return scores


@pytest.mark.parametrize("decoder", ["light", "hires"])
def test_chat_masks_come_from_the_generation_and_equal_a_second_forward(
    tiny_llm_dir, rgb_image, decoder
):
    """The chat decodes an answer's [SEG] from the hidden states its own generation computed (no
    second pass over prompt + answer); the mask is the one that second pass gives."""
    import functools

    from transformers import LogitsProcessorList

    model, processor = make_tiny_model(
        tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32, mask_decoder=decoder
    )
    model.eval()
    if decoder == "hires":
        processor.image_processor.hires_size = 24
    tokenizer = processor.tokenizer
    answer = tokenizer("<p> water </p> [SEG] there", add_special_tokens=False)["input_ids"]
    chat = ChatSession(model, processor, GenerationSettings(max_new_tokens=len(answer) + 1))
    chat.add_image(rgb_image)
    lm = model.language_model
    original = lm.generate

    def forced_generate(*args, **kwargs):
        force = _ForceTokens(answer + [tokenizer.eos_token_id], kwargs["input_ids"].shape[1])
        return original(*args, **kwargs, logits_processor=LogitsProcessorList([force]))

    lm.generate = functools.partial(forced_generate)
    second_passes: list = []
    predict = model.predict_masks
    model.predict_masks = lambda *a: second_passes.append(a) or predict(*a)
    reply = chat.ask("segment the water")
    assert "[SEG]" in reply.text and len(reply.masks) == 1
    assert not second_passes, "the chat ran a second forward pass for the mask"
    # The reference: the same prompt and answer through predict_masks.
    chat.reset()
    chat.add_image(rgb_image)
    content = [{"type": "image"}, {"type": "text", "text": "\n"}] + [
        {"type": "text", "text": "segment the water"}
    ]
    inputs = processor(
        chat._conversation() + [{"role": "user", "content": content}],
        chat.images,
        add_generation_prompt=True,
    )
    logits, _ = predict(inputs, torch.tensor([answer + [tokenizer.eos_token_id]]))
    grid = rgb_image.data.shape[1:]
    ref = torch.nn.functional.interpolate(logits[0][None, None].float(), size=grid, mode="bilinear")
    assert (reply.masks[0] == (ref[0, 0] > 0).numpy()).mean() > 0.999
