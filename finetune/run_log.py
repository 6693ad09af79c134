"""Training logs: one JSON object per line in OUTPUT/log.jsonl, optionally mirrored to tensorboard."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any


class RunLog:
    """Appends records to `folder/log.jsonl` (a resumed run continues the same file).

    Args:
        folder: the run's output folder.
        tensorboard: also write scalars to `folder/tensorboard` (needs the tensorboard package).
    """

    def __init__(self, folder: str | Path, *, tensorboard: bool = False) -> None:
        self.path = Path(folder) / "log.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
