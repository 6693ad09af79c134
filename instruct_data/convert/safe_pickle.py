"""Load a RefCOCO-style ``refs`` pickle without executing code.

The unpickler resolves no globals at all (so no class, function or reduce target can be named),
and the result is then walked: only list, dict, str, int, float, tuple, bool and None pass.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

ALLOWED = (list, dict, str, int, float, tuple, bool, type(None))


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only plain lists, dicts, strings and numbers are allowed"
        )


def _check(obj: Any, depth: int = 0) -> None:
    if depth > 100:
        raise pickle.UnpicklingError("pickle nests deeper than 100 levels")
    if not isinstance(obj, ALLOWED):
        raise pickle.UnpicklingError(
            f"refusing a {type(obj).__name__} in the pickle: only plain builtins are allowed"
        )
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check(k, depth + 1)
            _check(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check(v, depth + 1)


def load_plain_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` admitting only plain builtins; Python 2 byte strings decode as latin-1."""
    data = Path(path).read_bytes()
    try:
        obj = _PlainUnpickler(io.BytesIO(data)).load()
    except UnicodeDecodeError:
        obj = _PlainUnpickler(io.BytesIO(data), encoding="latin1").load()
    _check(obj)
    return obj
