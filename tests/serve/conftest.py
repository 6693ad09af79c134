"""Fixtures: `served`, a live `skyeye.serve` over the scripted tiny model (see serve_testing);
`api`, the same app through a `TestClient`; `png_url`, a small image."""

from __future__ import annotations

import pytest
from serve_testing import API_KEY, live_server, segmenting_server_chat


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_llm_dir):
    """(base_url, allow_files root) of a server over the scripted tiny model, API key required."""
    from skyeye.serve import ServeConfig, create_app

    root = tmp_path_factory.mktemp("allowed")
    config = ServeConfig(
        model="skyeye-tiny", api_key=API_KEY, allow_files=root, max_request_bytes=4 * 1024 * 1024
    )
    with live_server(create_app(config, segmenting_server_chat(tiny_llm_dir))) as url:
        yield url, root


@pytest.fixture(scope="module")
def api(tiny_llm_dir):
    """A `TestClient` (no sockets) with the API key over the scripted tiny model, answers of at
    most 8 tokens."""
    from fastapi.testclient import TestClient

    from skyeye.serve import ServeConfig, create_app

    config = ServeConfig(model="skyeye-tiny", api_key=API_KEY, max_new_tokens=8)
    app = create_app(config, segmenting_server_chat(tiny_llm_dir))
    with TestClient(
        app, headers={"Authorization": f"Bearer {API_KEY}"}, raise_server_exceptions=False
    ) as client:
        yield client


@pytest.fixture(scope="module")
def png_url() -> str:
    """A 32 x 32 RGB PNG as a data URL (small, so many requests stay fast)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
