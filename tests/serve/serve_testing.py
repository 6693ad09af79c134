"""A live `skyeye.serve` on 127.0.0.1 (uvicorn in a thread, a free port) for the OpenAI client.

A module of its own (not `conftest`): several test folders have a `conftest.py`, and `from conftest
import ...` picked whichever was imported first when folders were run together.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

API_KEY = "test-key"


@contextmanager
def live_server(app) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread; yields its base URL (``http://.../v1``)."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Steps:
    """How many decoding steps a model has run (all answers together)."""

    def __init__(self) -> None:
        self.count = 0


def scripted_settings(script, **settings):
    """`GenerationSettings` whose every answer also gets the logits processors ``script(self)``
    makes: a test model scripted this way answers alike through `generate` (the chat) and the
    server's batcher, which applies each answer's processors to its own row of logits."""
    import dataclasses

    from transformers import LogitsProcessorList

    from skyeye.chat.session import GenerationSettings

    @dataclasses.dataclass
    class Scripted(GenerationSettings):
        def generate_kwargs(self):
            kwargs = super().generate_kwargs()
            given = list(kwargs.get("logits_processor") or [])
            kwargs["logits_processor"] = LogitsProcessorList([*script(self), *given])
            return kwargs

    return Scripted(**settings)


class _Forced:
    """Logits processor: token ``forced(n)`` at the answer's n-th token (None: the model's
    choice, with ``banned`` tokens excluded); the prompt length is read at the first call."""

    def __init__(self, forced, banned=()) -> None:
        self.forced, self.banned, self.prompt = forced, list(banned), None

    def __call__(self, input_ids, scores):
        import torch

        if self.prompt is None:
            self.prompt = input_ids.shape[1]
        token = self.forced(input_ids.shape[1] - self.prompt)
        if token is None:
            return scores.index_fill(1, torch.tensor(self.banned), -float("inf"))
        only = torch.full_like(scores, -float("inf"))
        only[:, token] = 0.0
        return only


def segmenting_server_chat(llm_dir, max_new_tokens: int = 6):
    """The tiny random SkyEye scripted to end every answer with [SEG] and its end token (the
    [SEG] second to last within ``max_tokens``), under `generate` and the server's batcher alike
    (`skyeye_testing.segmenting_chat` scripts `generate` only)."""
    from skyeye_testing import make_tiny_model

    from skyeye.chat.session import ChatSession

    model, processor = make_tiny_model(llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    model.eval()
    seg, eos = model.config.seg_token_id, processor.tokenizer.eos_token_id

    def script(settings):
        last = max(settings.max_new_tokens - 1, 1)
        return [_Forced(lambda n: seg if n == last - 1 else eos if n == last else None, [eos])]

    settings = scripted_settings(script, max_new_tokens=max_new_tokens)
    return ChatSession(model, processor, settings)


def slow_chat(llm_dir, seconds_per_token: float, max_new_tokens: int = 6):
    """(session, steps): the tiny random SkyEye made slow and endless: each token takes
    ``seconds_per_token`` and end-of-turn is never chosen, so an answer runs to ``max_tokens``
    unless it is stopped (as a long answer of a real model does); `steps` counts its tokens, so a
    test sees whether a dropped client's answer really stopped."""
    import time

    from skyeye_testing import make_tiny_model

    from skyeye.chat.session import ChatSession

    model, processor = make_tiny_model(llm_dir)
    model.eval()
    eos = processor.tokenizer.eos_token_id
    steps = Steps()

    def slow(n: int) -> None:
        steps.count += 1
        time.sleep(seconds_per_token)

    def script(settings):
        return [_Forced(lambda n: slow(n), [eos])]

    settings = scripted_settings(script, max_new_tokens=max_new_tokens)
    return ChatSession(model, processor, settings), steps


def raw_post(url: str, body: bytes, headers: dict[str, str] | None = None) -> socket.socket:
    """Send ``POST url`` with ``body`` over a plain socket and return the open socket (the test
    reads from it, or closes it to play a client that goes away)."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=30)
    head = [
        f"POST {parsed.path} HTTP/1.1",
        f"Host: {parsed.hostname}:{parsed.port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return sock


def read_until(sock: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    """Read from ``sock`` until ``marker`` arrived (e.g. the first SSE chunk)."""
    seen = b""
    while marker not in seen:
        data = sock.recv(65536)
        if not data or len(seen) > limit:
            raise AssertionError(f"no {marker!r} in the response: {seen[:500]!r}")
        seen += data
    return seen
