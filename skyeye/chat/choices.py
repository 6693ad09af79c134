"""Multiple choice scored, not generated: each option's log-likelihood given the image.

A 135M LLM asked to pick a letter writes "E" to a four-option question; what it *prefers* among
the options it was given is better measured by how likely it finds each (as lmms-eval scores
multiple choice). The prompt with its image is run once (its KV cache kept) and the options are
scored together as one batch on top of it, so four options cost about one prefill plus one short
batched forward, not four prefills.

Two scorings, as lmms-eval's ``acc`` and ``acc_norm``:
- ``letter``: log p(letter | prompt), the first answer token;
- ``text``: log p("C. option text" | prompt) divided by its length in characters, so long options
  are not penalised for their length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from skyeye.chat.scene_choice import scene_choice
from skyeye.errors import OptionsError
from skyeye.grounding.options import MultipleChoice, format_choice, parse_options

ChoiceScoring = Literal["letter", "text"]
#: Keys of the processor's output the backbone takes for the prompt.
_PROMPT_KEYS = ("input_ids", "attention_mask", "pixel_values", "wavelengths")


@dataclass(frozen=True)
class ChoiceScores:
    """Per option, in the question's order: ``letter`` log p(letter | prompt) and ``text`` the
    length-normalised log p of the whole stated option ('C. a lake')."""

    letter: list[float]
    text: list[float]

    def best(self, scoring: ChoiceScoring) -> int:
        """Index of the highest-scoring option (the first on ties)."""
        values = self.letter if scoring == "letter" else self.text
        return max(range(len(values)), key=lambda i: (values[i], -i))


@torch.no_grad()
def score_choices(
    model: Any, tokenizer: Any, inputs: dict[str, Any], choice: MultipleChoice
) -> ChoiceScores:
    """Score every option of ``choice`` as the answer to the prompt ``inputs``.

    Args:
        model: a `SkyEyeForConditionalGeneration` (its backbone `model.model` runs the prompt).
        tokenizer: the processor's tokenizer.
        inputs: the processor's output for the conversation ending with the question and the
            generation prompt (input_ids (1, P), attention_mask (1, P), pixel_values, wavelengths).
        choice: the question's options (`skyeye.grounding.options.parse_options`).
    """
    backbone = model.model
    device = backbone.device
    prompt = {k: inputs[k] for k in _PROMPT_KEYS if k in inputs and inputs[k] is not None}
    prompt = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in prompt.items()}
    first = backbone(**prompt, use_cache=True, logits_to_keep=1)
    last = torch.log_softmax(first.logits[0, -1].float(), dim=-1)  # (V,)

    letters = [
        tokenizer(o.letter, add_special_tokens=False)["input_ids"][0] for o in choice.options
    ]
    texts = [format_choice(o) for o in choice.options]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    k, longest = len(ids), max(len(i) for i in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch = torch.full((k, longest), pad, dtype=torch.long, device=device)
    keep = torch.zeros((k, longest), dtype=torch.long, device=device)
    for row, seq in enumerate(ids):
        batch[row, : len(seq)] = torch.tensor(seq, device=device)
        keep[row, : len(seq)] = 1
    cache = first.past_key_values
    cache.batch_repeat_interleave(k)
    prompt_mask = prompt["attention_mask"].expand(k, -1)
    rest = backbone(
        batch,
        attention_mask=torch.cat([prompt_mask, keep], dim=1),
        cache=cache,  # transformers 5: the KV cache argument (past_key_values is deprecated)
        use_cache=True,
    )
    logp = torch.log_softmax(rest.logits.float(), dim=-1)  # (K, T, V): token t+1 given t
    text_scores = []
    for row, seq in enumerate(ids):
        total = last[seq[0]] + sum(logp[row, t, seq[t + 1]] for t in range(len(seq) - 1))
        text_scores.append(float(total) / len(texts[row]))
    return ChoiceScores(letter=[float(last[i]) for i in letters], text=text_scores)


def choice_answer(
    model: Any,
    tokenizer: Any,
    inputs: dict[str, Any],
    question: str,
    scoring: ChoiceScoring,
    max_length: int | None = None,
    *,
    scene_head: bool = False,
) -> str | None:
    """The answer to a multiple-choice ``question`` ('C. a lake', the best-scoring option), a
    plain sentence when its options cannot be answered (a single option, more than 26, an empty
    one, or a question whose longest option would run past the model's context ``max_length``),
    or None when it lists no options.

    scene_head: answer a scene question about one image by the model's scene head
    (`skyeye.chat.scene_choice`) where it has one; every other question by option likelihood.
    """
    try:
        choice = parse_options(question)
    except OptionsError as err:
        return f"I cannot answer this as a multiple-choice question: {err}."
    if choice is None:
        return None
    if max_length is not None:
        prompt = int(inputs["input_ids"].shape[1])
        longest = max(
            len(tokenizer(format_choice(o), add_special_tokens=False)["input_ids"])
            for o in choice.options
        )
        if prompt + longest > max_length:
            return (
                "I cannot answer this as a multiple-choice question: the question takes "
                f"{prompt} tokens and its longest option {longest} more, past the model's "
                f"context of {max_length}; shorten the options or the question."
            )
    best = scene_choice(model, tokenizer, inputs, choice) if scene_head else None
    if best is None:
        best = score_choices(model, tokenizer, inputs, choice).best(scoring)
    return format_choice(choice.options[best])
