"""A live `skyeye.serve` on 127.0.0.1 (uvicorn in a thread, a free port) for the OpenAI client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from skyeye_testing import segmenting_chat

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


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_llm_dir):
    """(base_url, allow_files root) of a server over the scripted tiny model, API key required."""
    from skyeye.serve import ServeConfig, create_app

    root = tmp_path_factory.mktemp("allowed")
    config = ServeConfig(
        model="skyeye-tiny", api_key=API_KEY, allow_files=root, max_request_bytes=4 * 1024 * 1024
    )
    with live_server(create_app(config, segmenting_chat(tiny_llm_dir))) as url:
        yield url, root
