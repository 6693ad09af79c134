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


def slow_chat(llm_dir, seconds_per_token: float, max_new_tokens: int = 6):
    """(session, steps): the tiny random SkyEye made slow and endless: each token takes
    ``seconds_per_token`` and end-of-turn is never chosen, so an answer runs to ``max_tokens``
    unless it is stopped (as a long answer of a real model does); `steps` counts its tokens, so a
    test sees whether a dropped client's answer really stopped."""
    import time

    import torch
    from skyeye_testing import make_tiny_model
    from transformers import LogitsProcessor, LogitsProcessorList

    from skyeye.chat.session import ChatSession, GenerationSettings

    model, processor = make_tiny_model(llm_dir)
    model.eval()
    eos = processor.tokenizer.eos_token_id
    steps = Steps()

    class SlowNoEnd(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            steps.count += 1
            time.sleep(seconds_per_token)
            return scores.index_fill(1, torch.tensor([eos]), -float("inf"))

    original = model.language_model.generate

    def slow_generate(*args, **kwargs):
        given = list(kwargs.pop("logits_processor", None) or [])
        return original(
            *args, logits_processor=LogitsProcessorList([SlowNoEnd(), *given]), **kwargs
        )

    model.language_model.generate = slow_generate
    return ChatSession(model, processor, GenerationSettings(max_new_tokens=max_new_tokens)), steps


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
