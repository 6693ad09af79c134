"""Reading the JSON files of a model folder for cards and uploads (errors as `HubError`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skyeye.errors import HubError


def read_json(path: Path) -> Any:
    """Parse `path` as JSON; a missing or malformed file is a `HubError` naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HubError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise HubError(f"{path}: not valid JSON ({err})") from None


def read_config(folder: Path) -> dict[str, Any]:
    """The model folder's `config.json` (a SkyEye model needs one)."""
    if not (folder / "config.json").is_file():
        raise HubError(f"{folder}: no config.json; pass a SkyEye model folder (save_model output)")
    return read_json(folder / "config.json")
