"""Shared fixtures: a tiny random SkyEye (hidden 32, 2 layers, 16-px images), built offline.

The tiny LLM is a 2-layer Llama with a word-level tokenizer trained here on a few sentences and
given a ChatML chat template (the same template family as the embedded SmolLM2), so processor
and model logic is tested in milliseconds without any download.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from skyeye_testing import build_tiny_llm, make_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture
def tiny_model(tiny_llm_dir: Path):
    """(model, processor) with a 16-px DOFA-CLIP tower of width 32 and a 2-layer LLM."""
    return make_tiny_model(tiny_llm_dir)


@pytest.fixture
def rgb_image():
    """A random 3-band RasterImage (RGB wavelengths, 24x24 px, values 0..255)."""
    from skyeye.io.raster import RasterImage

    rng = np.random.default_rng(0)
    return RasterImage(
        data=rng.uniform(0, 255, size=(3, 24, 24)).astype(np.float32),
        band_names=["R", "G", "B"],
        wavelengths=[0.665, 0.56, 0.49],
    )
