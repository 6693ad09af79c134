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

__all__ = ["BatchRows", "stackable"]


def stackable(cache: DynamicCache) -> bool:
    """Whether ``cache``'s rows can be padded and stacked (every layer a plain `DynamicLayer`)."""
    return all(type(layer) is DynamicLayer for layer in cache.layers)


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
        return mask.to(self.cache.layers[0].keys.device)

    def join(self, cache: DynamicCache) -> None:
        """Add a one-row ``cache`` (a prefilled answer) as the last row."""
        if self.cache is None:
            self.cache, self.pads = cache, [0]
            return
        mine, theirs = self.length, cache.get_seq_length()
        grow = max(0, theirs - mine)
        for layer, new in zip(self.cache.layers, cache.layers, strict=True):
            layer.keys = torch.cat(
                [_pad_left(layer.keys, grow), _pad_left(new.keys, mine + grow - theirs)]
            )
            layer.values = torch.cat(
                [_pad_left(layer.values, grow), _pad_left(new.values, mine + grow - theirs)]
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
        index = torch.tensor(keep, device=self.cache.layers[0].keys.device)
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, trim:]
            layer.values = layer.values.index_select(0, index)[:, :, trim:]
        self.pads = [self.pads[b] - trim for b in keep]
