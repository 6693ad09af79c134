"""Training logs: one JSON object per line in OUTPUT/log.jsonl, optionally mirrored to tensorboard."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from skyeye.atomic import is_disk_full
from skyeye.errors import DiskFullError


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (a run killed mid-write) off `path`."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)


class RunLog:
    """Appends records to `folder/log.jsonl` (a resumed run continues the same file).

    Args:
        folder: the run's output folder.
        tensorboard: also write scalars to `folder/tensorboard` (needs the tensorboard package).
    """

    def __init__(self, folder: str | Path, *, tensorboard: bool = False) -> None:
        self.path = Path(folder) / "log.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(self.path)
        self.writer = None
        if tensorboard:
            if importlib.util.find_spec("tensorboard") is None:
                raise RuntimeError(
                    "train.tensorboard needs the tensorboard package: `pip install -c "
                    "constraints.txt tensorboard`, or set --tensorboard false (log.jsonl is always written)"
                )
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(folder) / "tensorboard"))

    def write(self, kind: str, step: int, **values: Any) -> None:
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        # One write of one whole line: a kill leaves at most a torn last line, which the next
        # run (resume) cuts off before appending.
        with self.path.open("a") as handle:
            try:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
            except OSError as err:
                if is_disk_full(err):
                    raise DiskFullError(
                        f"{self.path}: the disk holding {self.path.parent} is full: free space "
                        "or choose another output_dir"
                    ) from None
                raise
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
