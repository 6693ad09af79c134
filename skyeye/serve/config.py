"""The server's settings (one dataclass, filled by the CLI or by a caller of `create_app`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skyeye.constants import DTYPE_NAMES
from skyeye.io.policy import DEFAULT_REQUEST_MAX_PIXELS


@dataclass
class ServeConfig:
    """Settings of `skyeye.serve`.

    Args:
        model: bundled model name, model folder or hub id (also the id `/v1/models` lists, by its
            last path part).
        api_key: when set, every request needs ``Authorization: Bearer <api_key>`` (else 401).
        allow_files: root folder under which ``file://`` image URLs may be read; None refuses them.
        max_request_bytes: largest request body (413 beyond; images travel base64 inside it).
        max_pixels: largest width x height an image may declare, checked from its header before
            anything is decoded (413 beyond); decoded bytes are bounded with it
            (`skyeye.io.policy.ReadPolicy`).
        concurrency: answers generated at the same time: the batch size of the continuous
            batcher (`skyeye.serve.batcher`), which decodes them together, one token each per
            forward.
        queue_size: requests that may wait for a free slot; more than concurrency + queue_size
            at once get 429 (the OpenAI client retries those after a short wait).
        prefix_cache_mb: memory for the image-prefix cache (`skyeye.serve.prefix_lru`: the KV
            cache and patch tokens of recent system prompt + image prefixes, least recently used
            dropped first); 0 turns it off.
        max_new_tokens: default and upper bound of ``max_tokens``.
        device: torch device of the model.
        dtype: weights dtype of the chat's model: "auto" (the LLM in bfloat16 where its matrix
            products are fast, the tower and mask decoder in float32, as `skyeye.scene` loads
            it: the prefill is compute-bound), or a dtype name for all of it.
        jobs_dir: folder of the jobs (`skyeye.serve.jobs`; one sub-folder each, kept across
            restarts); None: ``skyeye-jobs`` in the server's working folder.
        max_jobs: jobs kept at once (any status); a new one beyond is refused (429).
        jobs_queue: jobs waiting for the worker; a new one beyond is refused (429).
        jobs_max_mb: disk the jobs' folders may take together (507 for a new job beyond; a
            running job past it fails).
        jobs_retention_hours: finished jobs older than this are removed.
        scene_max_pixels: largest width x height of a scene a job may analyse (checked from
            the header at submission; the scene is read window by window, so this bounds time,
            not memory).
    """

    model: str = "skyeye-tiny"
    api_key: str | None = None
    allow_files: Path | None = None
    max_request_bytes: int = 64 * 1024 * 1024
    max_pixels: int = DEFAULT_REQUEST_MAX_PIXELS
    concurrency: int = 4
    queue_size: int = 16
    prefix_cache_mb: float = 256.0
    max_new_tokens: int = 256
    device: str = "cpu"
    dtype: str = "auto"
    jobs_dir: Path | None = None
    max_jobs: int = 32
    jobs_queue: int = 8
    jobs_max_mb: float = 4096.0
    jobs_retention_hours: float = 24.0
    scene_max_pixels: int = 200_000_000

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.dtype not in ("auto", *DTYPE_NAMES):
            raise ValueError(f"dtype must be auto or one of {DTYPE_NAMES}, got {self.dtype!r}")
        if self.prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be 0 or more, got {self.prefix_cache_mb}")
        if self.queue_size < 0:
            raise ValueError(f"queue_size must be 0 or more, got {self.queue_size}")
        if self.max_request_bytes < 1024:
            raise ValueError(
                f"max_request_bytes must be at least 1024, got {self.max_request_bytes}"
            )
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1, got {self.max_pixels}")
        if self.allow_files is not None:
            self.allow_files = Path(self.allow_files).resolve()
        if self.max_jobs < 1 or self.jobs_queue < 1:
            raise ValueError(
                f"max_jobs and jobs_queue must be at least 1, got {self.max_jobs}, "
                f"{self.jobs_queue}"
            )
        if self.jobs_max_mb <= 0 or self.jobs_retention_hours <= 0:
            raise ValueError(
                f"jobs_max_mb and jobs_retention_hours must be positive, got "
                f"{self.jobs_max_mb}, {self.jobs_retention_hours}"
            )
        if self.scene_max_pixels < 1:
            raise ValueError(f"scene_max_pixels must be at least 1, got {self.scene_max_pixels}")
        self.jobs_dir = Path(self.jobs_dir or "skyeye-jobs").resolve()

    @property
    def model_id(self) -> str:
        """The name clients put in ``model``: the bundled model's name or the folder's name."""
        return Path(str(self.model).rstrip("/")).name or str(self.model)
