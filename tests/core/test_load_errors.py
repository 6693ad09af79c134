"""Damaged model folders, unwritable outputs and bad images: one line and exit 2, before any
model loads (issue 15, items 11 and 12)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from skyeye.bundled import resolve_model_folder
from skyeye.chat.terminal import main as chat_main

# A question needs an image (the chat refuses one without); the folder's damage is what fails.
IMAGE = str(Path(__file__).resolve().parents[2] / "examples" / "sentinel2_berlin_l1c.tif")


@pytest.fixture
def tiny_copy(tmp_path) -> Path:
    """A copy of the embedded skyeye-tiny folder (27 MB) to damage."""
    folder = tmp_path / "skyeye-tiny"
    shutil.copytree(resolve_model_folder("skyeye-tiny"), folder)
    return folder


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_truncated_weights_are_named_by_the_chat(tiny_copy, capsys):
    _truncate(tiny_copy / "model.safetensors")
    assert chat_main(["--model", str(tiny_copy), "--image", IMAGE, "--prompt", "hi"]) == 2
    _one_error_line(capsys, "model.safetensors", "truncated", "save it again")


def test_truncated_weights_are_named_by_merge(tiny_copy, tmp_path, capsys):
    from finetune import merge

    _truncate(tiny_copy / "model.safetensors")
    assert merge.main(["--model", str(tiny_copy), "--out", str(tmp_path / "merged")]) == 2
    _one_error_line(capsys, "model.safetensors", "truncated")


def test_truncated_adapter_is_named(tiny_copy, capsys):
    _truncate(tiny_copy / "adapter" / "adapter_model.safetensors")
    assert chat_main(["--model", str(tiny_copy), "--image", IMAGE, "--prompt", "hi"]) == 2
    _one_error_line(capsys, "adapter_model.safetensors", "truncated")


def test_pickled_adapter_is_refused(tiny_copy, capsys):
    adapter = tiny_copy / "adapter"
    (adapter / "adapter_model.safetensors").unlink()
    # A pickle that holds an object, not only tensors: what a hostile or old file may carry.
    torch.save(
        {"weights": torch.zeros(2), "extra": argparse.Namespace(x=1)}, adapter / "adapter_model.bin"
    )
    assert chat_main(["--model", str(tiny_copy), "--image", IMAGE, "--prompt", "hi"]) == 2
    _one_error_line(capsys, "adapter_model.bin", "cannot be loaded safely", "safetensors")


def test_empty_model_folder_says_there_is_no_config(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert chat_main(["--model", str(empty), "--image", IMAGE, "--prompt", "hi"]) == 2
    line = _one_error_line(capsys, "no config.json", "empty")
    assert "llm_source" not in line


def test_bad_image_fails_before_the_model_loads(tiny_copy, tmp_path, capsys):
    config = json.loads((tiny_copy / "config.json").read_text())
    # A model that cannot load (its LLM is missing): the image must be refused first.
    config["llm_source"] = str(tmp_path / "no-such-llm")
    (tiny_copy / "config.json").write_text(json.dumps(config))
    tif = tmp_path / "two_bands.tif"
    profile = dict(driver="GTiff", width=16, height=16, count=2, dtype="float32",
                   crs="EPSG:32633", transform=from_origin(500000, 5800000, 10, 10))  # fmt: skip
    with rasterio.open(tif, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).random((2, 16, 16), dtype=np.float32))
    assert chat_main(["--model", str(tiny_copy), "--image", str(tif), "--prompt", "hi"]) == 2
    line = _one_error_line(capsys, str(tif), "wavelength")
    assert "no-such-llm" not in line
