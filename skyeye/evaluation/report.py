"""The reproducibility part of an evaluation report: hashes and the exact settings."""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from skyeye.atomic import write_text
from skyeye.chat.session import ChatSession
from skyeye.evaluation.config import EvalConfig

REPORT_VERSION = "1.0"
# Left out of the config hash: they differ between machines, not between models.
_UNHASHED_KEYS = {"_name_or_path", "transformers_version", "_commit_hash"}


def config_hash(config: Any) -> str:
    """sha256 of the model config (sorted JSON), without machine-specific paths and versions."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in _UNHASHED_KEYS}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    data = clean(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(folder: str | Path) -> str | None:
    """sha256 over the model folder's top-level ``*.safetensors`` files (name + bytes), or None."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(file_sha256(f).encode())
    return digest.hexdigest()


def describe_settings(
    session: ChatSession,
    config: EvalConfig,
    *,
    model_id: str,
    data: str | Path,
    sar_wavelength: float | None,
    weights_digest: str | None = None,
) -> dict[str, Any]:
    """Everything a number depends on, for the report's ``settings``."""
    import transformers

    import skyeye

    model, processor, settings = session.model, session.processor, session.settings
    return {
        "model": model_id,
        "config_sha256": config_hash(model.config),
        "weights_sha256": weights_digest,
        "llm_source": getattr(model.config, "llm_source", None),
        "task": config.task,
        "data": str(data),
        "data_sha256": file_sha256(data),
        "image_root": str(Path(config.image_root or Path.cwd()).resolve()),
        "record_tasks": sorted(config.accepted_tasks) or "all",
        "limit": config.limit,
        "baselines": list(config.record_baselines),
        "prompt_template": config.template,
        "system_prompt": settings.system_prompt,
        "image_size": processor.image_processor.image_size,
        "num_image_tokens": processor.num_image_tokens,
        "read_size": settings.read_size,
        "sar_wavelength": sar_wavelength,
        # refseg: samples larger than the window go through the scene pipeline with these.
        "scene": config.scene_settings,
        "decoding": {
            **settings.generate_kwargs(),
            "temperature": settings.temperature if settings.do_sample else None,
            "top_p": settings.top_p if settings.do_sample else None,
            "seed": config.seed if settings.do_sample else None,
        },
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(model.device),
        "skyeye_version": skyeye.__version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write ``report`` as indented JSON (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return path
