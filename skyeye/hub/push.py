"""Uploading a SkyEye model folder to the Hugging Face hub (dry run by default)."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from huggingface_hub import HfApi

from skyeye.errors import HubError
from skyeye.hub.files import read_config

IGNORE_PATTERNS = [".git*", "__pycache__", "*.pyc", ".DS_Store"]


@dataclass
class PushPlan:
    """What `push` uploads: (path in repo, bytes) per file."""

    repo_id: str
    folder: Path
    files: list[tuple[str, int]]
    url: str | None = None

    def describe(self) -> str:
        total = sum(size for _, size in self.files)
        lines = [f"{len(self.files)} files, {total / 1e6:.1f} MB -> {self.repo_id}"]
        lines += [f"  {size / 1e6:10.3f} MB  {path}" for path, size in self.files]
        return "\n".join(lines)


def plan_push(folder: str | Path, repo_id: str) -> PushPlan:
    """Check `folder` is a model folder with a card and list the files `push` would upload."""
    folder = Path(folder)
    if repo_id.count("/") != 1 or repo_id.startswith("/") or repo_id.endswith("/"):
        raise HubError(f"repo {repo_id!r} must be 'org/name' (or 'user/name')")
    read_config(folder)
    if not (folder / "README.md").is_file():
        raise HubError(
            f"{folder}: no README.md model card; write one first: python -m skyeye.hub card --model {folder}"
        )
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if any(fnmatch(part, pat) for part in rel.split("/") for pat in IGNORE_PATTERNS):
            continue
        files.append((rel, path.stat().st_size))
    return PushPlan(repo_id=repo_id, folder=folder, files=files)


def push(
    folder: str | Path,
    repo_id: str,
    *,
    dry_run: bool = True,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload SkyEye model",
    api: HfApi | None = None,
) -> PushPlan:
    """Upload `folder` to the hub repo `repo_id` (only when `dry_run` is False).

    `api` defaults to `HfApi()` (token and endpoint from the usual huggingface_hub settings).
    """
    plan = plan_push(folder, repo_id)
    if dry_run:
        return plan
    api = api or HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(plan.folder),
        repo_type="model",
        revision=revision,
        commit_message=commit_message,
        ignore_patterns=IGNORE_PATTERNS,
    )
    plan.url = str(getattr(info, "commit_url", info))
    return plan
