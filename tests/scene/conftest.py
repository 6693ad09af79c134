"""Fixtures of the scene tests: one torch thread, and a tiny random SkyEye with a mask head."""

from __future__ import annotations

import pytest
from skyeye_testing import build_tiny_llm, make_tiny_model, one_torch_thread

from skyeye.chat.session import ChatSession

one_thread = pytest.fixture(scope="module", autouse=True)(one_torch_thread)


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> ChatSession:
    """A chat session on a tiny random SkyEye whose `[SEG]` answers decode masks."""
    llm = build_tiny_llm(tmp_path_factory.mktemp("llm"))
    model, processor = make_tiny_model(llm, use_mask_head=True, mask_head_hidden_size=32)
    model.eval()
    return ChatSession(model, processor)
