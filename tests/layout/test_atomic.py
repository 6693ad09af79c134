"""skyeye.atomic: a reader never sees half a file, and a full disk says so."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from skyeye import atomic
from skyeye.errors import DiskFullError


def test_write_text_replaces_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    atomic.write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic.atomic_open(target) as handle:
        handle.write("new, half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary left behind
    atomic.write_text(target, "new\n")
    assert target.read_text() == "new\n"


def test_atomic_path_keeps_the_suffix_for_drivers(tmp_path: Path) -> None:
    with atomic.atomic_path(tmp_path / "mask.tif") as tmp:
        assert tmp.suffix == ".tif" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "mask.tif").read_bytes() == b"x"


def test_full_disk_is_named_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    atomic.write_text(target, "{}")
    with pytest.raises(DiskFullError, match="disk holding .* is full"):
        with atomic.atomic_open(target) as handle:
            handle.write("{")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "{}"


def test_atomic_dir_swaps_whole_folders(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), atomic.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("2")
        raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "1"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_weights_file_gets_the_umask_mode_like_every_output(tmp_path: Path) -> None:
    # safetensors' save_file writes a new private (0600) file in place of the empty temporary
    # one: a saved model.safetensors must still be readable as the umask says (0644 here).
    import torch
    from safetensors.torch import save_file

    old = os.umask(0o022)
    try:
        with atomic.atomic_path(tmp_path / "model.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp))
    finally:
        os.umask(old)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o644
