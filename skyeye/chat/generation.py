"""How `ChatSession.stream` runs the model for one answer: a replaceable `AnswerGenerator`.

The default, `generate_with_hooks`, calls `SkyEyeForConditionalGeneration.generate` in the
calling thread and keeps the hidden states the `[SEG]` masks are decoded from with forward hooks
(`skyeye.modeling.generation_hooks`). The API server replaces it per session with its batcher
(`skyeye.serve.batcher`), which decodes many answers together in one scheduler thread and hands
back the same (new ids, states) pair, so everything `stream` does around generation (stop strings,
cancellation, streaming, measuring, masks) stays one code path.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from transformers import DynamicCache, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from skyeye.modeling.generation_hooks import GenerationStates, capture_generation

__all__ = ["AnswerGenerator", "generate_with_hooks"]


class AnswerGenerator(Protocol):
    """Generates one answer: ``(new_ids (1, T), states)``.

    ``inputs`` is the processor's output for the prompt (``input_ids`` (1, L), ``pixel_values``,
    ``wavelengths``, ...). Each generated token goes to ``streamer`` (after one ``put`` of the
    prompt ids, as `generate` does); ``stopping_criteria`` are checked after every token (a cancel
    event, stop strings). ``cache`` is a KV cache of the prompt's first tokens to extend (empty:
    none). ``states`` must hold the prompt's image patch tokens (``vision_calls``, one entry) and
    the last hidden state (1, D) of every token fed (``steps``), or be empty (masks then come from
    a second forward pass, `predict_masks`).
    """

    def __call__(
        self,
        model: Any,
        inputs: Any,
        *,
        streamer: BaseStreamer | None,
        stopping_criteria: StoppingCriteriaList,
        cache: DynamicCache,
        generate_kwargs: dict[str, Any],
    ) -> tuple[torch.Tensor, GenerationStates]: ...


def generate_with_hooks(
    model: Any,
    inputs: Any,
    *,
    streamer: BaseStreamer | None,
    stopping_criteria: StoppingCriteriaList,
    cache: DynamicCache,
    generate_kwargs: dict[str, Any],
) -> tuple[torch.Tensor, GenerationStates]:
    """`model.generate` in this thread, its hidden states kept by forward hooks."""
    with capture_generation(model) as states:
        new_ids = model.generate(
            **inputs,
            streamer=streamer,
            stopping_criteria=stopping_criteria,
            cache=cache,
            **generate_kwargs,
        )
    return new_ids, states
