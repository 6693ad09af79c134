"""Fixtures of the demo tests: a `DemoSession` on the tiny random model, and the bundled examples."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from demo.session import DemoConfig, DemoSession

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: The NAIP 2009/2020 before/after pair (tests/fixtures/change_pair/SOURCE.txt).
CHANGE_PAIR = Path(__file__).resolve().parents[1] / "fixtures" / "change_pair"


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


@pytest.fixture
def uploads(tmp_path: Path) -> Callable[[str], str]:
    """name -> a copy of that file of the NAIP before/after pair, as an upload arrives (the
    handlers delete what they read from Gradio's cache only, but a copy keeps the fixture safe)."""

    def copy(name: str) -> str:
        target = tmp_path / name
        shutil.copy(CHANGE_PAIR / name, target)
        return str(target)

    return copy
