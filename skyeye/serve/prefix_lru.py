"""The server's cache of recent prompt prefixes: their KV cache and patch tokens, LRU, bounded.

Two kinds of entry: the text before the first image (the system prompt and the chat template,
the same for every request with the same system prompt: about a third of a one-image prompt), and
the prompt up to its last image. A stateless client sends the whole conversation again with every follow-up, and many clients ask
several questions about one image. The prompt's start up to its last image token (system prompt,
the template, the images) is then the same tokens over the same pixels: its KV cache and the
tower's patch tokens are kept here, keyed by a digest of those token ids, the images' bytes and
band options (`skyeye.serve.images.image_digest`) and the served model, so the next such
request runs neither the tower nor that prefix. Bounded by bytes (``--prefix-cache-mb``): the
least recently used entries go first, and an entry larger than the whole budget is not kept.

Used only by the batcher's prefill thread (`skyeye.serve.prefill`; not thread-safe).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from skyeye.serve.kv_rows import kv

logger = logging.getLogger(__name__)

__all__ = ["PrefixEntry", "PrefixLRU", "prefix_key"]


def prefix_key(model_id: str, prefix_ids: torch.Tensor, image_digests: Sequence[str]) -> str:
    """The cache key of a prompt prefix: the model, its token ids (1, P) and its images' digests
    (one per image, in order; the image tokens themselves are all one placeholder id)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(model_id.encode())
    h.update(b"\0")
    h.update(prefix_ids.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    for digest in image_digests:
        h.update(b"\0")
        h.update(digest.encode())
    return h.hexdigest()


@dataclass
class PrefixEntry:
    """Keys and values (1, H, P, D) per layer of a prefix of P tokens, and the tower's patch
    tokens (n_images, N, D_vision) of its images (None: a text prefix)."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    vision: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.layers[0][0].shape[-2]

    @property
    def nbytes(self) -> int:
        kv = sum(k.nbytes + v.nbytes for k, v in self.layers)
        return kv + (0 if self.vision is None else self.vision.nbytes)

    def cache(self) -> DynamicCache:
        """A fresh `DynamicCache` holding the prefix. Extending it never changes the entry: a
        `DynamicLayer` appends by concatenating into new tensors."""
        return DynamicCache(ddp_cache_data=self.layers)

    @classmethod
    def cut(cls, cache: DynamicCache, length: int, vision: torch.Tensor | None) -> PrefixEntry:
        """The first ``length`` tokens of a one-row ``cache`` (copied: the entry must not keep
        the whole prompt's tensors alive)."""
        layers = []
        for index in range(len(cache.layers)):
            keys, values = kv(cache, index)
            layers.append((keys[:, :, :length].clone(), values[:, :, :length].clone()))
        return cls(layers, vision)


class PrefixLRU:
    """At most ``max_bytes`` of `PrefixEntry`, least recently used evicted first (0: off)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, PrefixEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> PrefixEntry | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: str, entry: PrefixEntry) -> None:
        """Keep ``entry`` (replacing one of the same key), then evict down to the budget."""
        size = entry.nbytes
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old.nbytes
        self._entries[key] = entry
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.nbytes -= dropped.nbytes
        logger.debug("prefix cache: %d entries, %.1f MB", len(self._entries), self.nbytes / 2**20)
