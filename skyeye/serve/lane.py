"""One answer in the running batch (`Lane`): its prompt, decoding rules and what it produced.

The rules are the ones `generate` would use for the same arguments, built by transformers' own
helpers (the generation config merged with the LLM's defaults; its logits processors: repetition
penalty, temperature, top-p, a seeded sampler; its stopping criteria: the length limit and end
tokens, plus the caller's cancel event and stop strings), so a greedy answer decoded in the batch
is the one `generate` gives alone. They are applied per answer to its own row of logits, so
answers with different settings share a batch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

__all__ = ["Lane", "make_lane"]


@dataclass
class Lane:
    """One answer being generated.

    inputs: the processor's prompt (``input_ids`` (1, L), ``pixel_values``, ``wavelengths``).
    ids: the prompt's ids (image positions as 0, as `generate` sees them) and the answer so far,
    (1, L + T); new: the answer's token ids; steps: the last hidden state (1, D) of every token
    fed (the prompt's last, then each answer token but the last); vision: the prompt's image patch
    tokens (n_images, N, D_vision). prefix_key / prefix_length: the server's prefix-cache entry of
    the prompt up to its last image (`skyeye.serve.prefix_lru`), or None; text_key / text_length:
    the entry of the text before its first image.
    """

    inputs: Any
    processors: LogitsProcessorList
    criteria: StoppingCriteriaList
    do_sample: bool
    streamer: BaseStreamer | None = None
    callers: StoppingCriteriaList = field(default_factory=StoppingCriteriaList)
    prefix_key: str | None = None
    prefix_length: int = 0
    text_key: str | None = None
    text_length: int = 0
    ids: torch.Tensor | None = None
    new: list[int] = field(default_factory=list)
    steps: list[torch.Tensor] = field(default_factory=list)
    vision: torch.Tensor | None = None
    prefix_hit: bool = False
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def stopped(self) -> bool:
        """Whether a criterion of the caller's already holds before any token (a cancelled
        client; the end-token criterion would read the prompt's last token, so it is not asked)."""
        assert self.ids is not None
        return bool(self.callers(self.ids, None)[0])

    def advance(self, logits: torch.Tensor) -> bool:
        """Pick the next token from this answer's row of ``logits`` (1, V) float32, stream it;
        True when the answer is finished (as `generate`: criteria first, then the streamer)."""
        assert self.ids is not None
        scores = self.processors(self.ids, logits)  # type: ignore[arg-type]  # a LongTensor
        if self.do_sample:
            token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)[:, 0]
        else:
            token = torch.argmax(scores, dim=-1)
        self.ids = torch.cat([self.ids, token[:, None].to(self.ids.device)], dim=-1)
        self.new.append(int(token[0]))
        finished = bool(self.criteria(self.ids, scores)[0])
        if self.streamer is not None:
            self.streamer.put(token.cpu())
        return finished

    def finish(self, error: BaseException | None = None) -> None:
        """End the answer (with ``error``, raised in the waiting thread); idempotent."""
        if self.done.is_set():
            return
        self.error = error
        if self.streamer is not None:
            self.streamer.end()
        self.done.set()

    def new_ids(self) -> torch.Tensor:
        """The answer's ids (1, T)."""
        return torch.tensor([self.new], dtype=torch.long)


def make_lane(
    model: Any,
    inputs: Any,
    generate_kwargs: dict[str, Any],
    stopping_criteria: StoppingCriteriaList | None,
    streamer: BaseStreamer | None,
) -> Lane:
    """A lane for ``inputs`` decoded as ``model.generate(**inputs, **generate_kwargs)`` would
    be (``model``: a `SkyEyeForConditionalGeneration`)."""
    lm = model.language_model
    input_ids = inputs["input_ids"]
    if input_ids.shape[0] != 1:
        raise ValueError(f"one prompt per lane, got a batch of {input_ids.shape[0]}")
    safe_ids = input_ids.masked_fill(model.model.get_placeholder_mask(input_ids), 0)
    kwargs = dict(generate_kwargs)
    given = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
    # transformers' own preparation (private helpers of GenerationMixin, 5.x): the same
    # processors and criteria `generate` builds, so the batch decodes exactly as it would.
    config, _ = lm._prepare_generation_config(None, **kwargs)
    lm._prepare_special_tokens(config, True, device=safe_ids.device, batch_size=1)
    config.max_length = config.max_new_tokens + safe_ids.shape[1]
    processors = lm._get_logits_processor(
        generation_config=config,
        input_ids_seq_length=safe_ids.shape[1],
        encoder_input_ids=safe_ids,
        logits_processor=given,
        device=safe_ids.device,
        model_kwargs={},
    )
    callers = stopping_criteria or StoppingCriteriaList()
    criteria = lm._get_stopping_criteria(config, callers)
    lane = Lane(inputs, processors, criteria, bool(config.do_sample), streamer, callers)
    lane.ids = safe_ids
    return lane
