"""`python -m skyeye.chat`: one-shot mode and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from skyeye_testing import make_tiny_model, run_chat_cli

from skyeye.chat.terminal import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"


@pytest.fixture
def tiny_folder(tiny_llm_dir, tmp_path):
    model, processor = make_tiny_model(tiny_llm_dir)
    model.save_pretrained(tmp_path / "model", processor=processor)
    return tmp_path / "model"


def test_one_shot_prints_an_answer_and_exits_0(tiny_folder, capsys):
    code = main(
        [
            "--model",
            str(tiny_folder),
            "--image",
            str(EXAMPLE),
            "--prompt",
            "describe this image .",
            "--max-new-tokens",
            "3",
            "--dtype",
            "float32",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() != ""


def test_empty_file_exits_non_zero_with_one_clear_line(tiny_folder, tmp_path, capsys):
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    code = main(["--model", str(tiny_folder), "--image", str(empty), "--prompt", "describe"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and "empty" in err[0]


def test_wavelength_count_must_match_bands(tiny_folder, capsys):
    code = main(
        [
            "--model",
            str(tiny_folder),
            "--image",
            str(EXAMPLE),
            "--wavelengths",
            "0.665,0.56,0.49",
            "--prompt",
            "describe",
        ]
    )
    assert code == 2
    assert "13" in capsys.readouterr().err


@pytest.mark.slow
def test_embedded_model_answers_about_the_example_scene():
    """The README's main job, end to end with the real embedded LLM, in a fresh process."""
    result = run_chat_cli(EXAMPLE, "Describe this image.", "--max-new-tokens", "40")
    assert result.stdout.strip(), "no answer printed"
    # One-shot output is the answer only: no warning or log line on stderr. The one exception is
    # the progress bar of the first run on a machine, which converts the GGUF LLM into its cache.
    other = [
        line
        for line in result.stderr.replace("\r", "\n").splitlines()
        if line.strip() and not line.startswith("Converting and de-quantizing GGUF tensors")
    ]
    assert other == [], result.stderr[-2000:]


def test_auto_dtype_is_bfloat16_only_where_its_matrix_products_are_fast(monkeypatch):
    import torch

    from skyeye.chat.loading import chat_dtype

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False)
    assert chat_dtype("auto", "cpu") == torch.float32  # emulated bfloat16 is slower
    assert chat_dtype("auto", "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert chat_dtype("auto", "cpu") == torch.bfloat16
    assert chat_dtype("float32", "cuda") == torch.float32
