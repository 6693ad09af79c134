"""Shared fixtures for the vision tests: the checkpoint builders in tests/fixtures."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

_BUILDERS = Path(__file__).resolve().parents[1] / "fixtures" / "make_vision_checkpoints.py"


def _load_builders() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_vision_checkpoints", _BUILDERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def builders() -> ModuleType:
    return _load_builders()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def rgbn() -> tuple[torch.Tensor, torch.Tensor]:
    """A (2, 4, 16, 16) batch with NAIP-like B, G, R, NIR wavelengths (µm)."""
    return torch.randn(2, 4, 16, 16), torch.tensor([0.48, 0.56, 0.64, 0.81])
