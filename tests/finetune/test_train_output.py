"""A training output folder that cannot be written: one line and exit 2 (issue 15, item 11)."""

from __future__ import annotations

import os
from pathlib import Path

from ft_helpers import write_recipe

from finetune import train


def test_read_only_training_output_is_refused_before_loading(tmp_path, tiny_llm_dir, capsys):
    if os.geteuid() == 0:  # root writes through file modes; /sys refuses even root
        out = Path("/sys/skyeye-test-run")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        out = locked / "run"
    path = write_recipe(tmp_path, tiny_llm_dir, train={"output_dir": str(out)})
    assert train.main(["--recipe", str(path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(out) in lines[0] and "writable --output_dir" in lines[0]
