"""The server's settings (one dataclass, filled by the CLI or by a caller of `create_app`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
        concurrency: answers generated at the same time (each holds one model forward at a time).
        queue_size: requests that may wait for a free slot; more than concurrency + queue_size
            at once get 429 (the OpenAI client retries those after a short wait).
        max_new_tokens: default and upper bound of ``max_tokens``.
        device: torch device of the model.
    """

    model: str = "skyeye-tiny"
    api_key: str | None = None
    allow_files: Path | None = None
    max_request_bytes: int = 64 * 1024 * 1024
    max_pixels: int = DEFAULT_REQUEST_MAX_PIXELS
    concurrency: int = 1
    queue_size: int = 16
    max_new_tokens: int = 256
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
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

    @property
    def model_id(self) -> str:
        """The name clients put in ``model``: the bundled model's name or the folder's name."""
        return Path(str(self.model).rstrip("/")).name or str(self.model)
