"""What the server relies on in `ChatSession` (issue 26): no answer without an image (the terminal
says so in one line and goes on), a cancel event from another thread, a seed that leaves torch's
global RNG alone."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from serve_testing import slow_chat
from skyeye_testing import make_tiny_model
from test_serve import NAIP

from skyeye.chat.session import ChatSession, GenerationSettings
from skyeye.errors import GenerationCancelled, NoImageError


@pytest.fixture
def chat(tiny_llm_dir) -> ChatSession:
    model, processor = make_tiny_model(tiny_llm_dir)
    model.eval()
    return ChatSession(model, processor, GenerationSettings(max_new_tokens=4))


def test_a_session_without_an_image_refuses_the_question(chat, rgb_image):
    with pytest.raises(NoImageError, match="no image in the conversation"):
        chat.ask("is there water ?")
    with pytest.raises(NoImageError):
        next(chat.stream("is there water ?"))
    assert chat.history == []
    chat.add_image(rgb_image)
    assert chat.ask("is there water ?").text is not None


def test_the_terminal_says_no_image_in_one_line_and_goes_on(chat, monkeypatch, capsys):
    from skyeye.chat.terminal import _interactive

    lines = iter(["is there water ?", f"/image {NAIP}", "describe this image .", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert _interactive(chat, "") == 0
    out, err = capsys.readouterr()
    errors = err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: no image in the conversation")
    assert out.count("skyeye> ") == 1  # only the answered question printed a reply prefix
    assert len(chat.history) == 2


def test_the_one_shot_terminal_without_an_image_exits_2_before_loading(capsys):
    from skyeye.chat.terminal import main

    assert main(["--model", "/nonexistent/model", "--prompt", "is there water ?"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --prompt needs an image to ask about: add --image PATH"
    ]


def test_cancel_from_another_thread_stops_at_the_next_token(tiny_llm_dir, rgb_image):
    chat, steps = slow_chat(tiny_llm_dir, seconds_per_token=0.02, max_new_tokens=300)
    chat.add_image(rgb_image)  # 300 tokens: 6 s unless cancelled
    cancel = threading.Event()
    pieces = chat.stream("describe this image .", cancel)
    next(pieces)
    started = time.perf_counter()
    threading.Timer(0.1, cancel.set).start()
    with pytest.raises(GenerationCancelled):
        list(pieces)
    assert time.perf_counter() - started < 2.0
    stopped_at = steps.count
    time.sleep(0.2)
    assert steps.count == stopped_at  # no decoding after the cancel
    assert chat.history == [] and chat.pending_images  # as before the question
    chat.settings.max_new_tokens = 3
    assert chat.ask("is there water ?").text is not None


def test_seeded_sampling_repeats_and_leaves_the_global_rng_alone(chat, rgb_image):
    chat.add_image(rgb_image)
    chat.settings = GenerationSettings(max_new_tokens=6, do_sample=True, temperature=1.5, seed=3)
    before = torch.random.get_rng_state()
    first = chat.ask("describe this image .").text
    assert torch.equal(torch.random.get_rng_state(), before)
    chat.reset()
    chat.add_image(rgb_image)
    assert chat.ask("describe this image .").text == first
