"""How `ChatSession.stream` decodes: `GenerationSettings`, stopping on a cancel event or a stop
string, and sampling with a per-answer seed.

Stop strings are matched on the decoded answer text (a stop string may span tokens); the answer
is cut where the first one starts. Seeded sampling draws from a `torch.Generator` of its own, so
a seed makes one answer reproducible without touching torch's global RNG (which concurrent
answers share).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

DEFAULT_SYSTEM_PROMPT = (
    "You are SkyEye, an assistant for Earth-observation imagery (optical, multispectral and SAR). "
    "Answer briefly and only from what the image shows."
)


@dataclass
class GenerationSettings:
    """Decoding settings of a chat session.

    Args:
        max_new_tokens: longest answer, in tokens.
        do_sample: sample instead of greedy decoding.
        temperature: sampling temperature (with `do_sample`).
        top_p: nucleus sampling mass (with `do_sample`).
        repetition_penalty: >1 discourages repeating tokens.
        system_prompt: first message of every conversation; None uses the LLM template's default.
        read_size: longest side, in pixels, at which images are read (bounds memory for huge
            rasters; masks and boxes are returned on this grid).
        stop: strings that end the answer: generation stops once the answer contains one, and
            the answer is cut where it starts.
        seed: with `do_sample`, draw from a generator seeded with it (the same seed and
            conversation give the same answer; torch's global RNG is not touched).
        mcq_scoring: a question listing lettered options is answered with the option of the
            highest likelihood given the image ("likelihood", `skyeye.chat.choices`) or by
            generating an answer like any other question ("generate").
        choice_scoring: with "likelihood", score each option by its letter alone ("letter",
            lmms-eval's acc) or by the whole stated option per character ("text", acc_norm).
        mask_classes: the classes the model's mask decoder outlines: a count or a description
            is measured on masks of these; a count of anything else gets a plain sentence
            (None: the model config's ``mask_classes``, else skyeye-tiny's
            `skyeye.chat.counting.DEFAULT_MASK_CLASSES`; `skyeye.chat.counting.decoder_classes`).
        measure: state what the masks measure and what the reader knows (`skyeye.chat.grounded`);
            False gives the raw LLM's words (evaluation's "raw" system, to see what measuring adds).
    """

    max_new_tokens: int = 200
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    read_size: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    mcq_scoring: Literal["likelihood", "generate"] = "likelihood"
    choice_scoring: Literal["letter", "text"] = "text"
    mask_classes: tuple[str, ...] | None = None
    measure: bool = True

    def generate_kwargs(self) -> dict[str, Any]:
        """`generate` arguments (a fresh seeded sampler each call: it holds the RNG state)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample and self.seed is not None:
            sampler = SeededSampling(self.seed, self.temperature, self.top_p)
            kwargs.update(do_sample=False, logits_processor=LogitsProcessorList([sampler]))
        elif self.do_sample:
            kwargs.update(temperature=float(self.temperature), top_p=float(self.top_p))
        return kwargs


class StopWhenSet(StoppingCriteria):
    """Stops generation once `event` is set (the reader went away or asked to stop)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> bool:
        return self.event.is_set()


def first_stop(text: str, stops: Sequence[str]) -> int:
    """Index in `text` where the earliest stop string starts, or -1."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else -1


def held_back(text: str, stops: Sequence[str]) -> int:
    """Characters at the end of `text` that may be the start of a stop string (not yet shown:
    the next token may complete it)."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


class StopStrings(StoppingCriteria):
    """Stops once the answer decoded so far contains one of `stops`.

    prompt_length: tokens of the prompt in `input_ids` (the answer is what follows them).
    """

    def __init__(
        self, decode: Callable[[list[int]], str], stops: Sequence[str], prompt_length: int
    ) -> None:
        self.decode, self.stops, self.prompt_length = decode, list(stops), prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> bool:
        text = self.decode(input_ids[0, self.prompt_length :].tolist())
        return first_stop(text, self.stops) >= 0


def tokens_before(decode: Callable[[list[int]], str], ids: list[int], cut: int) -> int:
    """How many of the answer's `ids` decode to text that ends at or before character `cut` (the
    tokens that carry a stop string, and any after it, are dropped with the text)."""
    keep = 0
    for k in range(1, len(ids) + 1):
        if len(decode(ids[:k])) > cut:
            break
        keep = k
    return keep


class SeededSampling(LogitsProcessor):
    """Samples the next token with its own generator and leaves only that token possible.

    Used with greedy decoding (``do_sample=False``): temperature and top-p are applied here, the
    draw comes from ``torch.Generator().manual_seed(seed)``, and greedy then takes the one token
    left. The same seed and prompt give the same answer whatever else the process samples.
    """

    def __init__(self, seed: int, temperature: float, top_p: float) -> None:
        self.seed = seed
        self.warpers: list[LogitsProcessor] = [TemperatureLogitsWarper(float(temperature))]
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(float(top_p)))
        self.generator: torch.Generator | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.generator is None:  # created on the device the scores are on
            self.generator = torch.Generator(scores.device).manual_seed(self.seed)
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        probs = torch.softmax(scores.float(), dim=-1)
        chosen = torch.multinomial(probs, 1, generator=self.generator)
        only = torch.full_like(scores, -float("inf"))
        return only.scatter(1, chosen, 0.0)
