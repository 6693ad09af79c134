"""The identity of a run: the prompt, the model, the settings and the source files it analysed.

A resumed run reuses earlier work only when its identity equals the earlier run's:
`skyeye.scene` its finished windows (`WindowStore`), `skyeye.batch` its finished scenes. Any
difference (another prompt, model, window size, dtype, or a source file rewritten since) means
the work is done again, and the log says what differed.

A source file is identified by its resolved path and size, plus a SHA-256 of its content when it
is small (up to `HASH_BYTES`: cheap, and immune to a copy that keeps the modification time) or
its modification time in nanoseconds when it is large (hashing a 1 GB scene on every resume
would cost seconds).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skyeye.bundled import list_bundled_models, resolve_model_folder
from skyeye.io.raster import BAND_FILE_EXTENSIONS

#: Files up to this size are identified by their content's hash, larger ones by mtime_ns.
HASH_BYTES = 8 * 1024 * 1024
#: Files of a model folder that identify its weights and configuration.
MODEL_FILE_SUFFIXES = {".safetensors", ".bin", ".json", ".model", ".txt"}


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """{"path", "size", "sha256" | "mtime_ns"} of a file; {"path", "error"} when it cannot be
    read (the run that uses it fails on it with a clear message anyway)."""
    path = Path(path)
    try:
        resolved = path.resolve(strict=True)
        st = resolved.stat()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python < 3.13)
        return {"path": str(path.absolute()), "error": type(err).__name__}
    out: dict[str, Any] = {"path": str(resolved), "size": st.st_size}
    if st.st_size <= HASH_BYTES:
        digest = hashlib.sha256()
        try:
            with open(resolved, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as err:
            return out | {"error": type(err).__name__}
        out["sha256"] = digest.hexdigest()
    else:
        out["mtime_ns"] = st.st_mtime_ns
    return out


def source_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The files a scene source reads: the file itself, a band folder's band files (as
    `SceneSource` collects them), or a list of band files."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in BAND_FILE_EXTENSIONS
            )
        return [path]
    return [Path(f) for f in source]


def model_identity(model: Any) -> dict[str, Any]:
    """A model's label (its name, folder, or class and checkpoint folder of a loaded one) and,
    for a local folder, the identity of its weight and configuration files: new weights under
    the same name are another model."""
    folder: Path | None
    if isinstance(model, (str, os.PathLike)):
        label, folder = str(model), Path(model)
        if label in list_bundled_models():
            folder = resolve_model_folder(label)  # a packaged model: its files say its version
    else:
        inner = getattr(model, "model", model[0] if isinstance(model, tuple) else model)
        path = getattr(getattr(inner, "config", None), "_name_or_path", "") or ""
        label, folder = f"{type(inner).__name__}:{path}", Path(path) if path else None
    out: dict[str, Any] = {"label": label}
    if not isinstance(model, (str, os.PathLike)):
        # A loaded model often has no folder (the chat's, a model built in memory): its weights
        # say which it is. Without them two models' runs shared one identity, and a model was
        # handed another's finished windows.
        out["weights"] = weights_fingerprint(inner)
    if folder is not None and folder.is_dir():
        out["files"] = [
            file_identity(f)
            for f in sorted(folder.iterdir())
            if f.is_file() and f.suffix.lower() in MODEL_FILE_SUFFIXES
        ]
    return out


def weights_fingerprint(module: Any, samples: int = 64) -> str:
    """A short hash of a loaded model's weights: every parameter's and buffer's name, shape and
    dtype and ``samples`` evenly spaced values of each (all of them is seconds for a large model;
    weights that differ differ in these almost surely, and a differing name, shape or dtype
    always shows)."""
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        tensors = [*module.named_parameters(), *module.named_buffers()]
        for name, tensor in tensors:
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // samples)
            values = flat[::step][:samples].to("cpu", torch.float64).numpy()
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(values.tobytes())
    return digest.hexdigest()[:16]


def dtype_label(model: Any, dtype: Any, device: str) -> str:
    """The dtypes the windows run in, e.g. "float32 (llm bfloat16)": part of a run's identity,
    so a resumed run never mixes windows computed in other dtypes."""
    if isinstance(model, (str, os.PathLike)):
        from skyeye.scene.infer import window_dtypes  # imports torch: only when needed

        weights, llm = window_dtypes(dtype, device)
        if weights is None:
            return "the checkpoint's"
    else:
        inner: Any = getattr(model, "model", model[0] if isinstance(model, tuple) else model)
        weights, llm = inner.dtype, next(inner.language_model.parameters()).dtype
    return f"{str(weights).removeprefix('torch.')} (llm {str(llm).removeprefix('torch.')})"


def run_identity(
    prompt: str,
    model: Any,
    settings: Mapping[str, Any],
    source: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    model_id: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The identity of a run, as plain JSON data: {"id", "prompt", "model", "settings",
    "source"}; "id" is a short hash of the rest (equal ids: the same run). `model_id`: the
    model's `model_identity`, when the caller computed it once for many runs."""
    body = {
        "prompt": prompt,
        "model": model_id if model_id is not None else model_identity(model),
        "settings": json.loads(json.dumps(dict(settings), sort_keys=True, default=str)),
        "source": [file_identity(f) for f in source_files(source)],
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return {"id": hashlib.sha256(text.encode()).hexdigest()[:16], **body}


def identity_differences(old: Any, new: Mapping[str, Any]) -> str:
    """What differs between an earlier run's identity and this one, for the log, e.g.
    "the prompt, settings (window)"; "an identity of an older version" when `old` is not one."""
    if not isinstance(old, Mapping) or "id" not in old:
        return "an identity written by an older version"
    parts = []
    for key, name in (("prompt", "the prompt"), ("model", "the model"), ("source", "the source")):
        if old.get(key) != new.get(key):
            parts.append(name + (" files" if key == "source" else ""))
    before, now = old.get("settings") or {}, new.get("settings") or {}
    # The prompt and model named above may be copied into the settings: not listed twice.
    keys = (set(before) | set(now)) - {"prompt", "model"}
    changed = sorted(k for k in keys if before.get(k) != now.get(k))
    if changed:
        parts.append(f"settings ({', '.join(changed)})")
    return ", ".join(parts) or "nothing visible (another version's identity)"
