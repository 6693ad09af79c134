"""The `served` fixture: a live `skyeye.serve` over the scripted tiny model (see serve_testing)."""

from __future__ import annotations

import pytest
from serve_testing import API_KEY, live_server
from skyeye_testing import segmenting_chat


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
