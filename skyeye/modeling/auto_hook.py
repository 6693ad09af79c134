"""Registers SkyEye with transformers' Auto classes once transformers' Auto modules are in use.

`import skyeye` must stay light: reading a raster (`skyeye.io`) needs neither torch nor
transformers, and importing them costs ~700 MiB of memory and seconds of start-up. But after
`import skyeye`, `AutoModelForImageTextToText.from_pretrained(folder)` must find SkyEye. So the
registration (`skyeye.modeling.auto`, which imports the model and so torch) runs at the first
moment both hold: an Auto module of transformers (`transformers.models.auto.*`) is loaded, and no
module of `skyeye` or `transformers` is half-way through its own import (registering then would
import a partially initialised module: a circular import). That moment is found by timing the
imports of those two packages, the way post-import hooks do (a `sys.meta_path` finder that wraps
each found module's `exec_module`); the finder removes itself once SkyEye is registered.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_WATCHED = ("skyeye", "transformers")
_AUTO_PREFIX = "transformers.models.auto."
_lock = threading.RLock()
_state = {"executing": 0, "registering": False, "done": False}


def _watched(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _WATCHED)


def _auto_loaded() -> bool:
    return any(name.startswith(_AUTO_PREFIX) for name in list(sys.modules))


def register_when_ready() -> None:
    """Register now if transformers' Auto classes are loaded and no watched import is running."""
    with _lock:
        if _state["done"] or _state["registering"] or _state["executing"]:
            return
        if not _auto_loaded():
            return
        _state["registering"] = True
    try:
        importlib.import_module("skyeye.modeling.auto")  # its import registers the classes
        with _lock:
            _state["done"] = True
        uninstall()
    finally:
        with _lock:
            _state["registering"] = False


class _AutoRegistrationFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: times the imports of `skyeye` and `transformers` modules."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if _state["done"] or not _watched(fullname):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        # Each found spec has its own loader, so wrapping the instance's method leaves
        # `module.__loader__` the real loader (source lookups, resources keep working).
        def timed_exec_module(module: ModuleType, _exec: Any = exec_module) -> None:
            with _lock:
                _state["executing"] += 1
            try:
                _exec(module)
            finally:
                with _lock:
                    _state["executing"] -= 1
            register_when_ready()

        try:
            loader.exec_module = timed_exec_module  # type: ignore[method-assign,union-attr]
        except AttributeError:  # a loader with slots: leave its module untimed
            pass
        return spec


_FINDER = _AutoRegistrationFinder()


def install() -> None:
    """Time the coming imports (idempotent); register at once if the moment is already here."""
    if not _state["done"] and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    register_when_ready()


def uninstall() -> None:
    """Stop timing imports (SkyEye is registered)."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
