"""The on-disk record of a scene run: one finished file pair per window, so a killed run resumes
where it stopped and the final stitch reads the same bytes whether or not it was interrupted."""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from skyeye.atomic import write_bytes, write_text
from skyeye.scene.identity import identity_differences
from skyeye.scene.windows import SceneWindow

if TYPE_CHECKING:  # imports torch
    from skyeye.scene.infer import WindowAnswer

logger = logging.getLogger(__name__)

STATE = "state.json"


class WindowStore:
    """`<out>/.scene-work/`: state.json (the run's identity) and, per window,
    `w<index>.npz` (mask probability float16, valid pixels, preview thumbnail) then
    `w<index>.json` (answer text, boxes, phrase); the .json is written last and marks it done."""

    def __init__(self, folder: Path, identity: dict[str, Any], resume: bool = True) -> None:
        """`identity`: the run's (`skyeye.scene.identity.run_identity`). Windows of an earlier
        run are kept only when its identity is the same; otherwise they are deleted, and the
        log says what differed, before this run starts over."""
        self.folder = Path(folder)
        state = self.folder / STATE
        if state.exists() and resume:
            try:
                previous = json.loads(state.read_text())
            except (OSError, ValueError):
                previous = None
            if not isinstance(previous, dict) or previous.get("id") != identity.get("id"):
                logger.warning(
                    "%s: the finished windows there are of another run (changed: %s): "
                    "computing every window again",
                    self.folder.parent,
                    identity_differences(previous, identity),
                )
                shutil.rmtree(self.folder)
        elif self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not state.exists():
            write_text(state, json.dumps(identity, indent=1, sort_keys=True))

    @classmethod
    def existing(cls, folder: Path) -> WindowStore:
        """Open a finished or partial run's store to read it (no identity check)."""
        store = cls.__new__(cls)
        store.folder = Path(folder)
        return store

    def _json(self, index: int) -> Path:
        return self.folder / f"w{index:06d}.json"

    def done(self, index: int) -> bool:
        return self._json(index).exists()

    def save(self, index: int, record: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
        write_bytes(self.folder / f"w{index:06d}.npz", buffer.getvalue())
        write_text(self._json(index), json.dumps(record, sort_keys=True))

    def save_window(
        self, win: SceneWindow, thumb: np.ndarray, valid: np.ndarray, answer: WindowAnswer | None
    ) -> None:
        """Window `win` done: its thumbnail (C, th, tw), valid pixels (h, w) bool and the model's
        answer (None: all nodata, recorded as skipped); its mask probability as float16."""
        arrays: dict[str, np.ndarray] = {"valid": np.packbits(valid.ravel()), "thumb": thumb}
        record: dict[str, Any] = {
            "row": win.row,
            "col": win.col,
            "height": win.height,
            "width": win.width,
            "valid_pixels": int(valid.sum()),
        }
        if answer is None:
            record["skipped"] = True
        else:
            keys = ("x1", "y1", "x2", "y2", "angle", "phrase")
            boxes = [{k: getattr(b, k) for k in keys} for b in answer.boxes]
            record.update(answer=answer.text, phrase=answer.phrase, boxes=boxes)
            arrays.update(getattr(answer, "arrays", None) or {})  # a change run's class masks
            if answer.prob is not None:
                arrays["prob"] = answer.prob.astype(np.float16)
                record["mask_pixels"] = int(((answer.prob >= 0.5) & valid).sum())
        self.save(win.index, record, arrays)

    def record(self, index: int) -> dict[str, Any]:
        return json.loads(self._json(index).read_text())

    def arrays(self, index: int) -> dict[str, np.ndarray]:
        with np.load(self.folder / f"w{index:06d}.npz") as data:
            return {k: data[k] for k in data.files}

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
