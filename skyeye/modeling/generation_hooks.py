"""Generation hooks: `[SEG]` masks from a generation's own hidden states, no second forward pass.

`generate` already computes, for every token it feeds the LLM, the last hidden state (the input of
the output embedding) and, once, the tower's patch tokens (the projector's input). Kept with
forward hooks while `generate` runs (`capture_generation`), they are all a mask decoder needs:
`masks_from_generation` decodes every `[SEG]` of the answer from them, where `predict_masks`
would run the LLM and the tower again over prompt + answer (as long as the prefill). Only a
`[SEG]` that is the very last generated token (cut off by `max_new_tokens`) has no hidden state
yet; then `predict_masks` runs, one forward pass.

The chat (`skyeye.chat.session`) and the scene windows (`skyeye.scene.infer`) both decode this way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["GenerationStates", "capture_generation", "captured_inputs", "masks_from_generation"]


@contextmanager
def captured_inputs(module: torch.nn.Module, last_position: bool) -> Iterator[list[torch.Tensor]]:
    """Collect the first positional input of every `module` call while the block runs.

    last_position: keep only `x[:, -1]` of each input (B, L, D) -> (B, D) (the LLM's output
    embedding sees (B, 1, D) per decoding step and the prompt's last position at prefill);
    otherwise the whole input (e.g. the projector's (n_images, N, D_vision)).
    """
    seen: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, args: tuple[Any, ...], _output: Any) -> None:
        x = args[0]
        seen.append((x[:, -1] if last_position else x).detach())

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@dataclass
class GenerationStates:
    """What one `generate` call showed the hooks.

    vision_calls: the projector's inputs, (n_images, N, D_vision) per call (one call per
    `generate`); steps: per LLM forward call, the last hidden state (B, D_text) of the token it
    was fed: steps[0] is the prompt's last token, steps[i] generated token i - 1.
    """

    vision_calls: list[torch.Tensor] = field(default_factory=list)
    steps: list[torch.Tensor] = field(default_factory=list)

    @property
    def vision(self) -> torch.Tensor | None:
        """The tower's patch tokens of the prompt's images, when the tower ran exactly once."""
        return self.vision_calls[0] if len(self.vision_calls) == 1 else None


@contextmanager
def capture_generation(model: Any) -> Iterator[GenerationStates]:
    """Hooks on `model`'s projector and LLM output embedding while the block runs `generate`."""
    head = model.language_model.get_output_embeddings()
    with (
        captured_inputs(model.projector, last_position=False) as vision_calls,
        captured_inputs(head, last_position=True) as steps,
    ):
        yield GenerationStates(vision_calls, steps)


def masks_from_generation(
    model: Any,
    inputs: dict[str, Any],
    new_ids: torch.Tensor,
    states: GenerationStates | None,
    seg_image_index: Sequence[Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask logits (K, H, W) and image index (K,) of the `[SEG]`s in the answer `new_ids` (B, T).

    `inputs` is the prompt as built by the processor (input_ids (B, L), pixel_values, ...); the
    prompt's own `[SEG]`s (earlier turns, typed text) make no mask, as in `predict_masks`. Falls
    back to `predict_masks` without `states` (e.g. a forced answer), when the tower did not run
    exactly once, or when a `[SEG]` is the last generated token. `seg_image_index`: per answer
    `[SEG]`, its image or a (before, after) pair (a change mask), as in the model's `forward`.
    """
    batch, new = new_ids.shape
    seg_id = model.config.seg_token_id
    vision = None if states is None else states.vision
    steps = [] if states is None else states.steps
    if vision is None or len(steps) < new or bool((new_ids[:, -1] == seg_id).any()):
        if seg_image_index is None:  # the call as it always was (scripted test models)
            return model.predict_masks(inputs, new_ids)
        return model.predict_masks(inputs, new_ids, seg_image_index)
    prompt = inputs["input_ids"]
    length = prompt.shape[1]
    hidden = steps[0].new_zeros((batch, length + new, steps[0].shape[-1]))
    if new > 1:
        hidden[:, length : length + new - 1] = torch.stack(steps[1:new], dim=1)
    ids = torch.cat([prompt.masked_fill(prompt == seg_id, -1), new_ids.to(prompt.device)], 1)
    return model.decode_masks(
        hidden,
        ids,
        vision,
        None,
        seg_image_index,
        pixels=inputs.get("pixel_values_hires"),
        wavelengths=inputs.get("wavelengths"),
    )
