"""The running batch's KV cache: one row per answer, left-padded to the longest.

Each answer is prefilled alone (its own `DynamicCache`, 1 row); `join` adds it to the batch's
cache, `leave` drops finished rows. Rows are left-padded, so every answer's next token is
written at the same column and one forward decodes them all; the padding is masked out by
`attention_mask` and each row keeps its own positions (RoPE), so a row's attention sees exactly
its own tokens. Only caches of plain full-attention layers (`DynamicLayer`) can be stacked this
way: a sliding-window layer keeps a rolling window per row, so `stackable` says no and the
batcher then decodes one answer at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

__all__ = ["BatchRows", "cache_device", "kv", "set_kv", "stackable"]


def stackable(cache: DynamicCache | None) -> bool:
    """Whether ``cache``'s rows can be padded and stacked (every layer a plain `DynamicLayer`)."""
    return cache is not None and all(type(layer) is DynamicLayer for layer in cache.layers)


def kv(cache: DynamicCache, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values (B, H, L, D) of layer ``index`` of a filled cache."""
    layer = cache.layers[index]
    keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
    if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
        raise ValueError(f"layer {index} of the KV cache holds no keys and values")
    return keys, values


def set_kv(cache: DynamicCache, index: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    layer = cache.layers[index]
    layer.keys, layer.values = keys, values  # type: ignore[union-attr]


def cache_device(cache: DynamicCache) -> torch.device:
    return kv(cache, 0)[0].device


def _pad_left(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, H, L, D) -> (B, H, n + L, D) with zeros in front."""
    return F.pad(x, (0, 0, n, 0)) if n else x


class BatchRows:
    """The batch's cache (B, H, L, D per layer) and each row's left padding.

    `cache` is what the decoding forward extends; `pads[b]` columns of row b are padding.
    """

    def __init__(self) -> None:
        self.cache: DynamicCache | None = None
        self.pads: list[int] = []

    @property
    def size(self) -> int:
        return len(self.pads)

    @property
    def length(self) -> int:
        """Columns of the cache (the longest row)."""
        return 0 if self.cache is None else self.cache.get_seq_length()

    def attention_mask(self) -> torch.Tensor | None:
        """(B, length + 1) long: 0 on padding, 1 on real tokens and the token fed next; None
        without padding (then the forward takes the same path as a lone `generate`)."""
        if not any(self.pads):
            return None
        assert self.cache is not None
        mask = torch.ones((self.size, self.length + 1), dtype=torch.long)
        for row, pad in enumerate(self.pads):
            mask[row, :pad] = 0
        return mask.to(cache_device(self.cache))

    def join(self, cache: DynamicCache) -> None:
        """Add a one-row ``cache`` (a prefilled answer) as the last row."""
        if self.cache is None:
            self.cache, self.pads = cache, [0]
            return
        mine, theirs = self.length, cache.get_seq_length()
        grow = max(0, theirs - mine)
        for index in range(len(self.cache.layers)):
            (keys, values), (new_keys, new_values) = kv(self.cache, index), kv(cache, index)
            set_kv(
                self.cache,
                index,
                torch.cat([_pad_left(keys, grow), _pad_left(new_keys, mine + grow - theirs)]),
                torch.cat([_pad_left(values, grow), _pad_left(new_values, mine + grow - theirs)]),
            )
        self.pads = [pad + grow for pad in self.pads] + [mine + grow - theirs]

    def leave(self, rows: list[int]) -> None:
        """Drop ``rows``; columns that are padding in every remaining row go too."""
        keep = [b for b in range(self.size) if b not in set(rows)]
        if not keep:
            self.cache, self.pads = None, []
            return
        assert self.cache is not None
        trim = min(self.pads[b] for b in keep)
        kept = torch.tensor(keep, device=cache_device(self.cache))
        for index in range(len(self.cache.layers)):
            keys, values = kv(self.cache, index)
            set_kv(
                self.cache,
                index,
                keys.index_select(0, kept)[:, :, trim:],
                values.index_select(0, kept)[:, :, trim:],
            )
        self.pads = [self.pads[b] - trim for b in keep]
