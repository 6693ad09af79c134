"""Load a DOFA vision tower from an open_clip folder, the hub, a checkpoint file or our own folder.

Layouts:
    open_clip (DOFA-CLIP / GeoLB): ``open_clip_config.json`` + ``open_clip_model.safetensors``;
        ``visual.trunk.<k>`` -> ``trunk.<k>``; ``text.*``, ``logit_scale``, ``logit_bias`` belong
        to the text side and are skipped; training-only ``translators.*`` are ignored.
    torchgeo DOFA v1: one ``.pth``/``.safetensors`` file with bare trunk keys ``<k>`` -> ``trunk.<k>``.
    SkyEye: ``config.json`` + ``model.safetensors`` from :meth:`SkyEyeVisionTower.save_pretrained`.
Any other key, or a key the tower expects but the file lacks, raises :class:`CheckpointKeyError`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from skyeye.modeling.vision.checkpoint import (
    CheckpointKeyError,
    infer_trunk_config,
    load_strict,
    read_state_dict,
)
from skyeye.modeling.vision.configuration import SkyEyeVisionConfig
from skyeye.modeling.vision.tower import CONFIG_NAME, WEIGHTS_NAME, SkyEyeVisionTower

logger = logging.getLogger(__name__)

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
VISUAL_PREFIX = "visual.trunk."
# Keys of an open_clip checkpoint that are not the vision tower's business.
NON_VISUAL_PREFIXES = ("text.", "translators.")
NON_VISUAL_KEYS = ("logit_scale", "logit_bias")
# Head counts of the published DOFA-CLIP timm trunks (not recoverable from weight shapes).
OPEN_CLIP_TRUNK_HEADS: dict[str, int] = {
    "dofa_vit_base_patch16_siglip_224": 12,
    "dofa_vit_so400m_patch14_siglip_384": 16,
}
HUB_PREFIX = "hf-hub:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt"]
_HUB_TORCH_FILES = ["*.pth", "*.pt", "*.bin"]


def load_vision_tower(
    source: str | Path,
    *,
    config: SkyEyeVisionConfig | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> SkyEyeVisionTower:
    """Build a :class:`SkyEyeVisionTower` from ``source`` and load its weights strictly.

    Args:
        source: local folder (open_clip or SkyEye layout), checkpoint file (torchgeo DOFA layout,
            ``.safetensors`` or ``.pth/.pt/.bin``), or hub id ``hf-hub:org/name`` / ``org/name``.
        config: tower shape; None infers it from the weights (and open_clip_config.json).
        device, dtype: where/how to place the loaded tower.
        cache_dir, local_files_only: passed to ``huggingface_hub.snapshot_download``.
    """
    folder_or_file = resolve_source(source, cache_dir=cache_dir, local_files_only=local_files_only)
    if folder_or_file.is_dir():
        if (folder_or_file / CONFIG_NAME).is_file() and (folder_or_file / WEIGHTS_NAME).is_file():
            if config is not None:
                raise ValueError(
                    f"{folder_or_file} carries its own {CONFIG_NAME}; do not pass config="
                )
            return SkyEyeVisionTower.from_pretrained(folder_or_file, device=device, dtype=dtype)
        trunk_state, heads, label = _read_open_clip_folder(folder_or_file)
    else:
        trunk_state, heads, label = _split_file(folder_or_file), None, str(folder_or_file)
    if config is None:
        config = infer_trunk_config(trunk_state, num_heads=heads)
    tower = SkyEyeVisionTower(config)
    load_strict(tower, {f"trunk.{k}": v for k, v in trunk_state.items()}, source=label)
    logger.info("loaded %s vision tower from %s", config.family, label)
    return tower.to(device=device, dtype=dtype).eval()


def resolve_source(
    source: str | Path, *, cache_dir: str | Path | None = None, local_files_only: bool = False
) -> Path:
    """Local path for ``source``: an existing path as is, a hub id through the hub cache."""
    text = str(source)
    if text.startswith(HUB_PREFIX):
        return download_hub_repo(text[len(HUB_PREFIX) :], cache_dir, local_files_only)
    path = Path(source).expanduser()
    if path.exists():
        return path
    if _HUB_ID.match(text):
        return download_hub_repo(text, cache_dir, local_files_only)
    raise FileNotFoundError(
        f"vision tower source {text!r} is neither an existing file/folder nor a hub id "
        "('hf-hub:org/name' or 'org/name')"
    )


def download_hub_repo(
    repo_id: str, cache_dir: str | Path | None = None, local_files_only: bool = False
) -> Path:
    """Snapshot folder of ``repo_id`` (config, safetensors, tokenizer files; torch files only
    when the repo has no safetensors). Honours huggingface_hub's offline mode."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    def fetch(patterns: list[str]) -> Path:
        return Path(
            snapshot_download(
                repo_id,
                allow_patterns=patterns,
                cache_dir=None if cache_dir is None else str(cache_dir),
                local_files_only=local_files_only,
            )
        )

    try:
        folder = fetch(_HUB_FILES)
        if not any(folder.glob("*.safetensors")):
            folder = fetch(_HUB_FILES + _HUB_TORCH_FILES)
    except RepositoryNotFoundError as err:
        raise FileNotFoundError(f"hub repo {repo_id!r} does not exist or is private") from err
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as err:
        raise FileNotFoundError(
            f"hub repo {repo_id!r} is not in the local Hugging Face cache and cannot be "
            f"downloaded now (offline mode or no network: {type(err).__name__}). Download it "
            f"on a connected machine (`hf download {repo_id}`) and copy the cache, or pass "
            "the local folder instead."
        ) from err
    return folder


def read_open_clip_config(folder: Path) -> dict[str, Any]:
    """``model_cfg`` of an open_clip folder's ``open_clip_config.json``."""
    path = folder / OPEN_CLIP_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a vision tower folder: expected {OPEN_CLIP_CONFIG} + "
            f"{OPEN_CLIP_WEIGHTS[0]} (open_clip / DOFA-CLIP) or {CONFIG_NAME} + {WEIGHTS_NAME} "
            "(SkyEye)"
        )
    raw = json.loads(path.read_text())
    return raw.get("model_cfg", raw)


def read_open_clip_state(folder: Path) -> tuple[dict[str, Tensor], str]:
    """All tensors of an open_clip folder's weights file, and that file's path."""
    for name in OPEN_CLIP_WEIGHTS:
        if (folder / name).is_file():
            return read_state_dict(folder / name), str(folder / name)
    raise FileNotFoundError(f"{folder} has {OPEN_CLIP_CONFIG} but none of {OPEN_CLIP_WEIGHTS}")


def split_open_clip_state(
    state: Mapping[str, Tensor], source: str
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(trunk keys without ``visual.trunk.``, text-side keys as stored); other keys are errors."""
    trunk, text, unknown = {}, {}, []
    for key, value in state.items():
        if key.startswith(VISUAL_PREFIX):
            trunk[key[len(VISUAL_PREFIX) :]] = value
        elif key.startswith(NON_VISUAL_PREFIXES) or key in NON_VISUAL_KEYS:
            if not key.startswith("translators."):
                text[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointKeyError(source, missing=(), unexpected=unknown)
    if not trunk:
        raise ValueError(f"{source} has no '{VISUAL_PREFIX}*' keys: not a DOFA-CLIP checkpoint")
    return trunk, text


def heads_from_open_clip_config(model_cfg: Mapping[str, Any]) -> int | None:
    """Vision head count named by an open_clip config (explicit ``heads`` or a known trunk)."""
    vision_cfg = model_cfg.get("vision_cfg", {})
    if "heads" in vision_cfg:
        return int(vision_cfg["heads"])
    return OPEN_CLIP_TRUNK_HEADS.get(vision_cfg.get("timm_model_name", ""))


def _read_open_clip_folder(folder: Path) -> tuple[dict[str, Tensor], int | None, str]:
    model_cfg = read_open_clip_config(folder)
    state, label = read_open_clip_state(folder)
    trunk, _ = split_open_clip_state(state, label)
    return trunk, heads_from_open_clip_config(model_cfg), label


def _split_file(path: Path) -> dict[str, Tensor]:
    """Trunk keys of a single checkpoint file in open_clip, SkyEye or torchgeo (bare) layout."""
    state = read_state_dict(path)
    if any(k.startswith(VISUAL_PREFIX) for k in state):
        return split_open_clip_state(state, str(path))[0]
    if all(k.startswith("trunk.") for k in state):
        return {k[len("trunk.") :]: v for k, v in state.items()}
    return state
