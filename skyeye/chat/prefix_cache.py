"""The conversation so far kept as a KV cache, so a follow-up question costs only its new tokens.

Every turn the processor renders the whole conversation again (system prompt, images, earlier
questions and answers, the new question). Without a cache, `generate` re-encodes every image and
re-reads that whole prefix. `PrefixCache` keeps the KV cache a turn's `generate` filled, with the
token ids it covers and the tower's patch tokens of the conversation's images; the next turn's
prompt shares a prefix with those ids (the rendered earlier turns), so the cache is cropped to the
longest common prefix and only the rest is fed. An answer the chat rewrote after generation (a
measured share, a stop string) simply makes the common prefix end earlier.

The cache is used only when every image of the new prompt lies inside the reused prefix: an image
added with the new question (its tokens after the prefix) needs the tower, and that turn builds a
fresh cache.
"""

from __future__ import annotations

import logging

import torch
from transformers import DynamicCache

logger = logging.getLogger(__name__)


class PrefixCache:
    """The last turn's KV cache, its token ids (1, L) and the images' patch tokens."""

    def __init__(self) -> None:
        self.ids: torch.Tensor | None = None
        self.cache: DynamicCache | None = None
        self.vision: torch.Tensor | None = None

    def clear(self) -> None:
        self.ids, self.cache, self.vision = None, None, None

    def take(self, input_ids: torch.Tensor, image_positions: torch.Tensor) -> DynamicCache | None:
        """The kept cache cropped to its common prefix with ``input_ids`` (1, L), or None when
        nothing is kept, the prefix is empty, or an image position (``image_positions`` (1, L)
        bool) lies past it. The kept cache is handed over (and forgotten here): the caller's
        `generate` extends it, and `keep` stores it again."""
        if self.ids is None or self.cache is None or input_ids.shape[0] != 1:
            return None
        ids, cache = self.ids, self.cache
        self.ids, self.cache = None, None
        n = min(ids.shape[1], input_ids.shape[1] - 1)  # at least one token is fed
        differs = (ids[0, :n].to(input_ids.device) != input_ids[0, :n]).nonzero()
        common = int(differs[0, 0]) if len(differs) else n
        if common == 0 or bool(image_positions[0, common:].any()):
            return None
        extra = cache.get_seq_length() - common
        if extra > 0:
            cache.crop(-extra)  # transformers 5: a negative count of tokens to drop
        logger.debug("prefix cache: %d of %d prompt tokens reused", common, input_ids.shape[1])
        return cache

    def keep(self, ids: torch.Tensor, cache: DynamicCache, vision: torch.Tensor | None) -> None:
        """Store ``cache`` with the ids (1, >= cached length) it was filled from (prompt and
        answer) and the images' patch tokens (None: keep the ones stored, same images)."""
        length = cache.get_seq_length()
        self.ids, self.cache = ids[:, :length].detach(), cache
        if vision is not None:
            self.vision = vision
