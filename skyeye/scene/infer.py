"""Ask one question about a batch of windows in one batched generation.

Every window gets the same prompt and the same number of image tokens, so the prompts of a batch
have the same length: they batch without padding, and a window's answer does not depend on which
other windows share its batch beyond floating-point reduction order.

The masks of the answers' `[SEG]` tokens come from the generation itself
(`skyeye.modeling.generation_hooks`): no second forward over prompt + answer, no second tower pass.

The prompt's text before the first image (system prompt and the user turn's header) is the same
for every window: its key/value cache is computed once per runner and every batch's prefill
starts after it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from skyeye.chat.loading import chat_dtype
from skyeye.chat.session import ChatSession, GenerationSettings, load_chat
from skyeye.grounding.parse import GroundedBox, parse_boxes, parse_seg_phrases
from skyeye.io.raster import RasterImage
from skyeye.modeling.generation_hooks import (
    GenerationStates,
    capture_generation,
    masks_from_generation,
)
from skyeye.processing.image_processor import FixedScaling, SkyEyeImageProcessor

logger = logging.getLogger(__name__)


@dataclass
class WindowAnswer:
    """The model's answer about one window.

    prob: (h, w) float32 mask probability on the window's grid (None when the answer has no
    [SEG]); boxes: normalised to the window; arrays: further per-window arrays the store keeps
    as they are (a change run's per-date class masks).
    """

    text: str
    boxes: list[GroundedBox] = field(default_factory=list)
    phrase: str | None = None
    prob: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def window_dtypes(
    dtype: torch.dtype | Literal["auto"] | None, device: str
) -> tuple[torch.dtype | None, torch.dtype | None]:
    """(model dtype, LLM dtype) a scene loads a model given by name in. "auto": the tower,
    projector and mask decoder in float32 and the LLM in the chat's "auto" dtype (bfloat16
    where its matrix products are fast, `chat_dtype`): the windows' prefill is compute-bound
    and bfloat16 makes it ~3x faster there, while the decoder's full-resolution convolutions
    are not. None: the checkpoint's dtype."""
    if dtype == "auto":
        return torch.float32, chat_dtype("auto", device)
    return dtype, dtype


def open_session(
    model: Any, device: str = "cpu", dtype: torch.dtype | Literal["auto"] | None = "auto"
) -> ChatSession:
    """A ChatSession from a model name/folder, a loaded ChatSession, or a (model, processor);
    a model given by name is loaded in `window_dtypes(dtype, device)`."""
    if isinstance(model, ChatSession):
        return model
    if isinstance(model, tuple) and len(model) == 2:
        return ChatSession(model[0], model[1])
    if isinstance(model, (str, Path)):
        weights, llm = window_dtypes(dtype, device)
        return load_chat(model, device=device, dtype=weights, llm_dtype=llm)
    raise TypeError(
        f"model must be a name/folder, a ChatSession or (model, processor), got {type(model)}"
    )


def image_processor_of(model: Any) -> SkyEyeImageProcessor:
    """The image processor `open_session(model)` would use, without loading the weights (a
    name/folder's own preprocessor config): a run decides what it asks from the scaling it
    resolves before the model is needed."""
    if isinstance(model, ChatSession):
        return model.processor.image_processor
    if isinstance(model, tuple) and len(model) == 2:
        return model[1].image_processor
    if isinstance(model, (str, Path)):
        from skyeye.bundled import resolve_model_folder

        return SkyEyeImageProcessor.from_pretrained(str(resolve_model_folder(model)))
    raise TypeError(
        f"model must be a name/folder, a ChatSession or (model, processor), got {type(model)}"
    )


def mask_classes_of(model: Any) -> tuple[str, ...]:
    """The classes `model`'s mask decoder outlines (`skyeye.chat.counting.decoder_classes`),
    without loading the weights for a name/folder (its own config.json)."""
    from skyeye.chat.counting import decoder_classes

    if isinstance(model, ChatSession):
        return decoder_classes(model.settings.mask_classes, model.model.config)
    if isinstance(model, tuple) and len(model) == 2:
        return decoder_classes(None, model[0].config)
    if isinstance(model, (str, Path)):
        from skyeye.bundled import resolve_model_folder
        from skyeye.modeling.configuration import SkyEyeConfig

        folder = resolve_model_folder(model)
        return decoder_classes(None, SkyEyeConfig.from_pretrained(str(folder)))
    raise TypeError(
        f"model must be a name/folder, a ChatSession or (model, processor), got {type(model)}"
    )


@dataclass
class PreparedBatch:
    """A batch's model inputs and each window's (h, w), without the windows' raw pixels;
    clouds: per window (2, h, w) bool, each date's clouds by the spectral rule (a change run's,
    `skyeye.grounding.clouds.pair_clouds`), None when not found that way."""

    inputs: dict[str, Any]
    grids: list[tuple[int, int]]
    clouds: list[np.ndarray] | None = None


class WindowRunner:
    """Runs the tower + LLM (+ mask head) on batches of window images."""

    def __init__(
        self,
        session: ChatSession,
        prompt: str,
        max_new_tokens: int = 64,
        force_answer: str | None = None,
    ) -> None:
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        self.model = session.model
        self.processor = session.processor
        self.settings: GenerationSettings = session.settings
        self.max_new_tokens = max_new_tokens
        system = self.settings.system_prompt
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": f"{self.processor.image_token}\n{prompt}"}
        ]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        ids = self.processor.tokenizer(
            self.processor.expand_image_tokens(text), add_special_tokens=False
        )["input_ids"]
        self._ids = torch.tensor([ids], dtype=torch.long)
        image_id = self.model.config.image_token_id
        first_image = ids.index(image_id) if image_id in ids else 0
        #: Prompt tokens before the first image, shared by every window (their cache: lazily).
        self.prefix_length = first_image
        self._prefix: Any = None
        # A forced answer (e.g. "<p>water</p> [SEG]") replaces generation by one forward pass.
        self.force_answer = force_answer
        self._forced = None
        if force_answer is not None:
            forced = self.processor.tokenizer(force_answer, add_special_tokens=False)["input_ids"]
            self._forced = torch.tensor([forced], dtype=torch.long)

    @property
    def patch_size(self) -> int:
        vc = self.model.config.vision_config
        return int(vc.image_size // vc.grid_size)

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @torch.no_grad()
    def run(
        self, images: Sequence[RasterImage], scaling: FixedScaling | None = None
    ) -> list[WindowAnswer]:
        """Answers for `images` (each (C, h, w)), in order; one generate call for the batch."""
        return self.answer(self.prepare(images, scaling))

    def prepare(
        self, images: Sequence[RasterImage], scaling: FixedScaling | None = None
    ) -> PreparedBatch:
        """The model inputs of `images`, value-scaled with ``scaling`` (the scene's, from
        `SkyEyeImageProcessor.fixed_scaling`; default: each window its own). Nothing refers to
        the images afterwards, so a caller that drops them frees the raw windows before
        `answer` runs the model."""
        if not images:
            return PreparedBatch({}, [])
        features = self.processor.image_processor(
            list(images), return_tensors="pt", scaling=scaling
        )
        ids = self._ids.repeat(len(images), 1).to(self.model.device)
        inputs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values": list(features["pixel_values"]),
            "wavelengths": list(features["wavelengths"]),
        }
        if "pixel_values_hires" in features:  # decoders that refine on the window's own pixels
            inputs["pixel_values_hires"] = list(features["pixel_values_hires"])
        grids = [(int(im.data.shape[1]), int(im.data.shape[2])) for im in images]
        return PreparedBatch(inputs, grids)

    @torch.no_grad()
    def answer(self, batch: PreparedBatch) -> list[WindowAnswer]:
        """Answers for a prepared batch, in order; one generate call."""
        if not batch.grids:
            return []
        inputs, grids = batch.inputs, batch.grids
        tokenizer = self.processor.tokenizer
        kwargs = self.settings.generate_kwargs()
        kwargs.update(max_new_tokens=self.max_new_tokens, do_sample=False)
        kwargs.pop("temperature", None)
        kwargs.pop("top_p", None)
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        states: GenerationStates | None
        if self._forced is not None:
            new_ids = self._forced.repeat(len(grids), 1).to(self.model.device)
            texts = [str(self.force_answer).strip()] * len(grids)
            states = None
        else:
            cache = self._prefix_cache(len(grids))
            if cache is not None:
                kwargs["cache"] = cache
            with capture_generation(self.model) as states:
                new_ids = self.model.generate(**inputs, pad_token_id=pad, **kwargs)
            del cache, kwargs  # the batch's key/value cache: freed before the masks are decoded
            texts = [t.strip() for t in tokenizer.batch_decode(new_ids, skip_special_tokens=True)]
        answers = [WindowAnswer(text=t, boxes=parse_boxes(t)) for t in texts]
        seg_id = self.model.config.seg_token_id
        if self.model.mask_head is None or seg_id is None or not (new_ids == seg_id).any():
            return answers
        logits, index = self._seg_masks(inputs, new_ids, states)
        for k in range(logits.shape[0]):
            row = int(index[k])
            h, w = grids[row]
            # Whatever grid the mask decoder gives, resample to the window's own grid.
            up = F.interpolate(logits[k][None, None].float(), size=(h, w), mode="bilinear")[0, 0]
            prob = torch.sigmoid(up).cpu().numpy().astype(np.float32)
            answer = answers[row]
            # Several [SEG] in one answer: their union (the highest probability).
            answer.prob = prob if answer.prob is None else np.maximum(answer.prob, prob)
            if answer.phrase is None:
                phrases = [p for p in parse_seg_phrases(answer.text) if p]
                answer.phrase = phrases[0] if phrases else None
        return answers

    def _prefix_cache(self, batch: int) -> Any:
        """A fresh key/value cache of the shared prompt prefix for `batch` rows (None when the
        prompt starts with the image, or the LLM's cache cannot be shared: full prefills)."""
        if self.prefix_length == 0:
            return None
        if self._prefix is None:
            self._prefix = prompt_prefix_cache(self.model, self._ids[:, : self.prefix_length])
            if self._prefix is None:
                self.prefix_length = 0
                return None
        return repeat_cache(self._prefix, batch)

    def _seg_masks(
        self, inputs: dict[str, Any], new_ids: torch.Tensor, states: GenerationStates | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (K, H, W) and image index (K,) of the `[SEG]`s in `new_ids` (B, T)."""
        return masks_from_generation(self.model, inputs, new_ids, states)


def prompt_prefix_cache(model: Any, ids: torch.Tensor) -> Any:
    """The LLM's key/value cache of prompt tokens `ids` (1, P) holding no image (the system
    prompt and the user turn's header, the same for every window), or None when the LLM's
    cache cannot be repeated over a batch (no `batch_repeat_interleave`)."""
    ids = ids.to(model.device)
    embeds, _, _ = model.embed_inputs(ids)
    out = model.language_model(
        inputs_embeds=embeds, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1
    )
    prefix = getattr(out, "cache", None)
    if not hasattr(prefix, "batch_repeat_interleave"):
        logger.info("the LLM's cache cannot be shared across windows; full prefills")
        return None
    return prefix


def repeat_cache(prefix: Any, batch: int) -> Any:
    """A copy of `prompt_prefix_cache`'s cache for `batch` rows (a forward extends the cache it
    is given, so each call gets its own)."""
    cache = copy.deepcopy(prefix)
    if batch > 1:
        cache.batch_repeat_interleave(batch)
    return cache
