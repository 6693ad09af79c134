"""`python -m skyeye.chat --image A --image B --date ... --prompt "What changed?"`: the change
answer as a sentence (or the grammar with --raw); the change answer's one-line errors exit 2."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from skyeye_testing import change_chat, make_tiny_model, two_dates, write_tiff

import skyeye.chat.session as session_module
from skyeye.chat.terminal import main


@pytest.fixture(scope="module")
def folder(tiny_llm_dir, tmp_path_factory):
    """A model folder for the terminal's checks; the session itself is `change_chat`'s."""
    model, processor = make_tiny_model(tiny_llm_dir)
    out = tmp_path_factory.mktemp("model") / "model"
    model.save_pretrained(out, processor=processor)
    return out


def _ask(folder, monkeypatch, tiny_llm_dir, before, after, *extra, scaling=None):
    session = change_chat(tiny_llm_dir)
    session.settings = dataclasses.replace(session.settings, mask_classes=("water",))
    if scaling is not None:
        session.processor.image_processor.value_scaling = scaling
    monkeypatch.setattr(session_module, "load_chat", lambda *a, **k: session)
    args = ["--model", str(folder), "--image", str(before), "--image", str(after)]
    args += ["--wavelengths", "0.49,0.56,0.665,0.842", "--save-masks", ""]
    args += ["--date", "2018-05-01", "--date", "2020-05-01", "--prompt", "What changed?"]
    return main(args + list(extra))


def test_terminal_prints_the_measured_change(folder, monkeypatch, tiny_llm_dir, tmp_path, capsys):
    before, after, _ = two_dates(nodata_rows=0)
    a, b = write_tiff(before, tmp_path / "a.tif"), write_tiff(after, tmp_path / "b.tif")
    assert _ask(folder, monkeypatch, tiny_llm_dir, a, b) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("Yes — ") and " changed (" in out and ", mask 1: water gained " in out
    threads = torch.get_num_threads()
    try:
        assert _ask(folder, monkeypatch, tiny_llm_dir, a, b, "--raw", "--threads", "1") == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert capsys.readouterr().out.startswith("<p>changed land cover</p> [SEG] Yes — ")


def test_terminal_all_cloud_date_exits_2_with_one_line(
    folder, monkeypatch, tiny_llm_dir, tmp_path, capsys
):
    before, after, _ = two_dates(nodata_rows=0)
    before.data /= 255  # 0-1 reflectance
    after.data[:] = 0.94  # bright and white in every band: all cloud by the spectral test
    a, b = write_tiff(before, tmp_path / "a.tif"), write_tiff(after, tmp_path / "b.tif")
    code = _ask(folder, monkeypatch, tiny_llm_dir, a, b, scaling="reflectance")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: ") and "without cloud on both dates" in err[0]
