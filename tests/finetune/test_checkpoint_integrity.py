"""Issue 15, items 3 and 4: checkpoints are verified before they are trusted (a damaged newest one
falls back to the newest intact one), a full disk during a save says so in one line, and the
`llm_random_init` model builds the same whether or not its base-llm/ exists (exact resume)."""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import signal
from pathlib import Path

import pytest
import torch
from ft_helpers import REPO

from finetune.state import MANIFEST, CheckpointManager, trainable_state, verify
from skyeye.errors import DiskFullError


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    model[0].weight.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    return model, optimizer, scheduler


def _step(model, optimizer, scheduler) -> None:
    loss = model(torch.randn(4, 8)).pow(2).mean()
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def _save(manager: CheckpointManager, step: int, model, optimizer, scheduler) -> Path:
    tmp = manager.begin(step)
    manager.write_rank(tmp, 0)
    manager.write_main(tmp, trainable_state(model), optimizer, scheduler, {"step": step})
    return manager.commit(step)


@pytest.mark.parametrize("damaged", ["trainable.safetensors", "optimizer.pt", "rng-0.pt"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, damaged):
    model, optimizer, scheduler = _setup()
    manager = CheckpointManager(tmp_path / "checkpoints", keep=3)
    _step(model, optimizer, scheduler)
    _save(manager, 1, model, optimizer, scheduler)
    at_step_1 = {k: v.clone() for k, v in trainable_state(model).items()}
    _step(model, optimizer, scheduler)
    newest = _save(manager, 2, model, optimizer, scheduler)
    assert json.loads((newest / MANIFEST).read_text())["files"].keys() >= {
        "trainable.safetensors",
        "optimizer.pt",
        "trainer_state.json",
    }
    target = newest / damaged
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])  # truncated later
    assert verify(newest) and not verify(manager.root / "checkpoint-1")

    fresh, opt2, sched2 = _setup(seed=1)
    with caplog.at_level(logging.WARNING, logger="finetune.state"):
        folder, state = manager.load_newest_valid(fresh, opt2, sched2, 0)
    assert folder.name == "checkpoint-1" and state["step"] == 1
    assert "checkpoint-2 is damaged" in caplog.text and damaged in caplog.text
    for name, value in trainable_state(fresh).items():
        assert torch.equal(value, at_step_1[name]), name
    assert opt2.state_dict()["state"][0]["step"] == 1


def test_a_changed_file_of_the_same_size_is_caught_by_the_hash(tmp_path):
    model, optimizer, scheduler = _setup()
    manager = CheckpointManager(tmp_path / "c")
    folder = _save(manager, 1, model, optimizer, scheduler)
    data = bytearray((folder / "trainable.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "trainable.safetensors").write_bytes(bytes(data))
    assert any("sha256" in p for p in verify(folder))
    assert manager.load_newest_valid(*_setup(), 0) is None


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """Writes past `limit` bytes fail with EFBIG, as on a full disk (soft limit, restored)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_full_disk_during_a_save_is_one_line_and_keeps_the_old_checkpoint(tmp_path):
    model, optimizer, scheduler = _setup()
    torch.nn.init.normal_(model[1].weight)
    manager = CheckpointManager(tmp_path / "checkpoints")
    _step(model, optimizer, scheduler)
    old = _save(manager, 1, model, optimizer, scheduler)
    big = torch.nn.Linear(512, 512)  # a 1 MB weight file: over the limit below
    big_opt = torch.optim.AdamW(big.parameters())
    with _file_size_limit(200_000), pytest.raises(DiskFullError) as err:
        tmp = manager.begin(2)
        manager.write_main(tmp, trainable_state(big), big_opt, scheduler, {"step": 2})
    message = str(err.value)
    assert "\n" not in message and "is full" in message and str(tmp_path) in message
    manager.abort(2)
    assert manager.latest() == old and not verify(old)
    assert not manager.tmp_dir(2).exists()


def test_random_init_model_is_the_same_whether_base_llm_exists_or_not(tmp_path):
    from finetune.args import parse_args
    from finetune.model_setup import load_or_build

    recipe = parse_args(
        [
            "--recipe",
            str(REPO / "finetune/recipes/tiny-test.yaml"),
            "--output_dir",
            str(tmp_path / "run"),
        ]
    )
    first, _ = load_or_build(recipe)  # writes OUTPUT/base-llm
    assert (tmp_path / "run" / "base-llm" / "config.json").is_file()
    after_first = torch.rand(3)
    second, _ = load_or_build(recipe)  # a resumed run: base-llm/ is there already
    after_second = torch.rand(3)
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert torch.equal(after_first, after_second)  # the RNG continues the same way too
