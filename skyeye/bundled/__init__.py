"""Bundled models (model folders shipped inside the package) and the resolution of
`name_or_path` to a model folder.

`skyeye-tiny` is shipped here as an ordinary hub-style model folder (`skyeye/bundled/skyeye-tiny`);
any other name is a local folder or a hub id (`org/name`), which is looked up in the local hub
cache. (Architecture presets of the vision tower are another thing:
`skyeye.modeling.vision.get_vision_config`.)
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

_BUNDLED_ROOT = Path(__file__).resolve().parent

#: Bundled model name -> its folder inside the package.
BUNDLED_MODELS: dict[str, Path] = {
    "skyeye-tiny": _BUNDLED_ROOT / "skyeye-tiny",
}


def list_bundled_models() -> list[str]:
    """Names of the models shipped with the package."""
    return sorted(BUNDLED_MODELS)


def get_bundled_model(name: str) -> Path:
    """Folder of the bundled model `name`."""
    try:
        return BUNDLED_MODELS[name]
    except KeyError:
        raise KeyError(
            f"unknown bundled SkyEye model {name!r}; known: {', '.join(list_bundled_models())}"
        ) from None


def resolve_model_folder(
    name_or_path: str | Path, *, revision: str | None = None, token: str | bool | None = None
) -> Path:
    """Map a bundled model's name, a local folder or a hub id to a local model folder.

    Hub ids are fetched with `huggingface_hub.snapshot_download`, which honours `HF_HUB_OFFLINE`
    and answers from the local cache when the network is unavailable.
    """
    text = str(name_or_path)
    if text in BUNDLED_MODELS:
        folder = BUNDLED_MODELS[text]
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"the bundled model {text!r} is missing its files in {folder}; reinstall skyeye"
            )
        return folder
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; a SkyEye model is a folder with config.json")
    if text.count("/") != 1 or text.startswith((".", "/")):
        raise FileNotFoundError(
            f"{text!r} is neither a bundled model ({', '.join(list_bundled_models())}), nor a "
            "folder, nor a hub id"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id=text, revision=revision, token=token))
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(
            f"the hub model {text!r} is not in the local cache and the hub cannot be reached; "
            "download it on a connected machine or pass a local folder"
        ) from err
