"""A follow-up question reuses the conversation's KV cache: the tower does not run again, only the
new tokens are fed, and the answer and its mask are those of a full recomputation."""

from __future__ import annotations

import numpy as np
from skyeye_testing import segmenting_chat


def _count_calls(module):
    """The length (last dimension: tokens of input ids) of every call's first input."""
    calls: list[int] = []
    module.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[-1]))
    return calls


def test_a_follow_up_feeds_only_its_new_tokens_and_answers_the_same(tiny_llm_dir, rgb_image):
    cached = segmenting_chat(tiny_llm_dir, max_new_tokens=6)
    full = segmenting_chat(tiny_llm_dir, max_new_tokens=6)
    for session in (cached, full):
        session.add_image(rgb_image)
    # (The scripted answer's [SEG] is appended after generation, so its mask comes from
    # `predict_masks`, one more tower call per turn in both sessions. Not a presence question,
    # whose verdict would draw the class question's mask too.)
    tower, tower_full = _count_calls(cached.model.projector), _count_calls(full.model.projector)
    embeddings = _count_calls(cached.model.language_model.get_input_embeddings())
    first = cached.ask("look at the water .")
    assert full.ask("look at the water .").text == first.text
    assert len(tower) == len(tower_full) == 2
    prompt_tokens = embeddings[0]
    tower.clear(), tower_full.clear(), embeddings.clear()

    second = cached.ask("and how much of it ?")
    full._prefix.clear()  # the same turn computed from nothing
    expected = full.ask("and how much of it ?")
    assert len(tower) == len(tower_full) - 1 == 1  # generation did not encode the image again
    assert embeddings[0] < prompt_tokens // 2  # the prefill fed the new question, not the prefix
    assert second.text == expected.text
    assert len(second.masks) == len(expected.masks) == 1
    assert np.array_equal(second.masks[0], expected.masks[0])


def test_a_new_image_or_a_reset_starts_a_fresh_cache(tiny_llm_dir, rgb_image):
    session = segmenting_chat(tiny_llm_dir, max_new_tokens=4)
    session.add_image(rgb_image)
    session.ask("is there water ?")
    tower = _count_calls(session.model.projector)
    session.add_image(rgb_image)
    session.ask("and here ?")
    assert len(tower) == 2  # the new image needs the tower (and the scripted mask once more)
    session.reset()
    assert session._prefix.cache is None
