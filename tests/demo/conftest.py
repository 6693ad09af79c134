"""Fixtures of the demo tests: a `DemoSession` on the tiny random model, and the bundled examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.session import DemoConfig, DemoSession

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def examples_dir() -> Path:
    """The repository's bundled real rasters (examples/ATTRIBUTION.md)."""
    return EXAMPLES


@pytest.fixture
def demo_config() -> DemoConfig:
    # Small reads and answers keep each test well under a second on a CPU.
    return DemoConfig(max_upload_mb=5, max_images=3, read_size=64, max_new_tokens=6)


@pytest.fixture
def session(tiny_model, demo_config):
    model, processor = tiny_model
    s = DemoSession(model, processor, demo_config)
    yield s
    s.close()
