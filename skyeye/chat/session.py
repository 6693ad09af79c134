"""`ChatSession`: multi-turn conversation state and streamed generation.

One session holds one conversation (its images and turns); the terminal chat and the Gradio demo
each create one per user, so two users never share state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from skyeye.chat.measured import state_measured
from skyeye.constants import SEG_TOKEN, torch_dtype
from skyeye.grounding.geo import MaskArea, mask_area
from skyeye.grounding.parse import GroundedBox, parse_boxes, parse_seg_phrases
from skyeye.io.raster import RasterImage, read_raster
from skyeye.modeling.folder_check import check_model_folder
from skyeye.modeling.generated_masks import (
    GenerationStates,
    capture_generation,
    masks_from_generation,
)
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.models import resolve_model_folder
from skyeye.processing.chat_encoding import content_text
from skyeye.processing.image_processor import SkyEyeImageProcessor
from skyeye.processing.processor import SkyEyeProcessor

logger = logging.getLogger(__name__)

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
    """

    max_new_tokens: int = 200
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    read_size: int = 512

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


class _StopWhenSet(StoppingCriteria):
    """Stops generation once `event` is set (the reader abandoned the stream)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> bool:
        return self.event.is_set()


@dataclass
class ChatReply:
    """One assistant answer with what it points at.

    text: the answer. boxes: boxes parsed from it (normalised to the image). masks: one (H, W)
    bool array per `[SEG]` on the grid of the image it refers to. mask_phrases: the phrase of
    each mask (or None). mask_images: for each mask, the index in `ChatSession.images` of the
    image it lies on. mask_areas: per mask, the measured share of the image's valid pixels and,
    on a georeferenced image, its ground area (`skyeye.grounding.geo.mask_area`); with one mask,
    any share or area the text states is that measured figure.
    """

    text: str
    boxes: list[GroundedBox] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    mask_phrases: list[str | None] = field(default_factory=list)
    mask_images: list[int] = field(default_factory=list)
    mask_areas: list[MaskArea] = field(default_factory=list)


class ChatSession:
    """A conversation with a SkyEye model about one or more images."""

    def __init__(
        self,
        model: SkyEyeForConditionalGeneration,
        processor: SkyEyeProcessor,
        settings: GenerationSettings | None = None,
    ) -> None:
        self.model = model
        self.processor = processor
        self.settings = settings or GenerationSettings()
        image_processor = processor.image_processor
        if getattr(model.mask_head, "needs_pixels", False) and image_processor.hires_size is None:
            # A decoder that refines on pixels gets them on the grid images are read at.
            image_processor.hires_size = self.settings.read_size
        self.images: list[RasterImage] = []
        # content: text, or text and image parts (see SkyEyeProcessor.__call__)
        self.messages: list[dict[str, Any]] = []
        self.last_reply: ChatReply | None = None
        self._pending_images = 0

    # -------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget the images and the turns."""
        self.images.clear()
        self.messages.clear()
        self.last_reply = None
        self._pending_images = 0

    def add_image(
        self,
        image: RasterImage | str | Path | Sequence[str | Path],
        **read_kwargs: Any,
    ) -> RasterImage:
        """Attach an image to the next user turn.

        Args:
            image: a `RasterImage`, or a path (file, band-per-file folder or list of band files)
                read with `skyeye.io.read_raster(**read_kwargs)`, e.g. `wavelengths=[...]`,
                `sensor="sentinel-2"`, `band_names=[...]`.
        """
        if not isinstance(image, RasterImage):
            read_kwargs.setdefault("max_size", self.settings.read_size)
            read_kwargs.setdefault("sar_wavelength", self.processor.image_processor.sar_wavelength)
            image = read_raster(image, **read_kwargs)
        # Fail now, not at the next question, when the bands cannot be mapped to wavelengths.
        self.processor.image_processor([image])
        self.images.append(image)
        self._pending_images += 1
        return image

    @property
    def pending_images(self) -> list[RasterImage]:
        """Images added since the last answered question (they go with the next one)."""
        return self.images[len(self.images) - self._pending_images :]

    def replace_image(self, old: RasterImage, new: RasterImage) -> None:
        """Swap pending image `old` for `new` (e.g. the same pixels with edited band names).

        Images of answered turns cannot change: the model has already seen them.
        """
        start = len(self.images) - self._pending_images
        for k in range(start, len(self.images)):
            if self.images[k] is old:
                self.processor.image_processor([new])  # the check add_image makes
                self.images[k] = new
                return
        raise ValueError("only an image not yet sent with a question can be replaced")

    @property
    def history(self) -> list[dict[str, str]]:
        """The conversation so far ({"role", "content"} dicts, without the system prompt), each
        image shown as `<image>` in the text of the turn it was attached to."""
        return [
            {"role": m["role"], "content": content_text(m["content"], self.processor.image_token)}
            for m in self.messages
        ]

    # --------------------------------------------------------- generation
    def _conversation(self) -> list[dict[str, Any]]:
        system = self.settings.system_prompt
        return ([{"role": "system", "content": system}] if system else []) + self.messages

    def stream(self, prompt: str) -> Generator[str, None, None]:
        """Ask `prompt` and yield the answer's text as it is generated.

        After the iterator is exhausted, `last_reply` holds the full `ChatReply`. A reader that
        stops early (closes the iterator, e.g. a closed browser tab) stops the generation and
        leaves the session as before the question: no half turn, the images still pending.
        """
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        # The images attach as image parts; the prompt is text, so a typed `<image>`, `[SEG]` or
        # `<|im_end|>` stays characters (the processor never turns user text into structure).
        content: list[dict[str, Any]] = [{"type": "image"}, {"type": "text", "text": "\n"}] * (
            self._pending_images
        ) + [{"type": "text", "text": prompt}]
        self.messages.append({"role": "user", "content": content})
        try:
            inputs = self.processor(self._conversation(), self.images, add_generation_prompt=True)
        except Exception:
            self.messages.pop()
            raise
        inputs = inputs.to(self.model.device) if hasattr(inputs, "to") else inputs
        streamer = TextIteratorStreamer(
            self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        result: dict[str, Any] = {}
        abandoned = threading.Event()

        def run() -> None:
            try:
                # The answer's [SEG] masks are decoded from the generation's own hidden states.
                with capture_generation(self.model) as states:
                    result["ids"] = self.model.generate(
                        **inputs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_StopWhenSet(abandoned)]),
                        **self.settings.generate_kwargs(),
                    )
                result["states"] = states
            except BaseException as err:  # surfaced in the caller's thread below
                result["error"] = err
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        pieces: list[str] = []
        shown = 0  # characters of the answer streamed so far
        try:
            for piece in streamer:
                pieces.append(piece)
                # Text after a [SEG] may state what its mask measures (a share, a yes/no): it is
                # held back until the mask is measured, then streamed as stated below.
                joined = "".join(pieces)
                seg = joined.find(SEG_TOKEN)
                limit = len(joined) if seg < 0 else seg + len(SEG_TOKEN)
                if limit > shown:
                    yield joined[shown:limit]
                    shown = limit
        except GeneratorExit:
            # Abandoned mid-answer: forget the question so the next one starts clean.
            abandoned.set()
            worker.join()
            self.messages.pop()
            raise
        finally:
            worker.join()
        if "error" in result:
            self.messages.pop()
            raise result["error"]
        text = "".join(pieces).strip()
        self._pending_images = 0
        reply = self._reply(text, inputs, result["ids"], result.get("states"))
        text, note = state_measured(reply.text, reply.mask_areas, reply.mask_phrases)
        if note:
            text = f"{text} {note}"
        streamed = "".join(pieces)[:shown].lstrip()
        if text.startswith(streamed):
            if len(text) > len(streamed):
                yield text[len(streamed) :]
        elif note:
            # Streamed text cannot be taken back: the measured figures follow it.
            yield f" {note}"
        reply.text = text
        self.messages.append({"role": "assistant", "content": text})
        self.last_reply = reply

    def extend_answer(self, text: str) -> None:
        """Append `text` (e.g. a whole-scene analysis of the same question) to the last answer,
        so that later turns see it in the history and `last_reply.text` carries it."""
        if not self.messages or self.messages[-1]["role"] != "assistant":
            raise ValueError("no answer to extend: ask a question first")
        self.messages[-1]["content"] = f"{self.messages[-1]['content']}\n\n{text}"
        if self.last_reply is not None:
            self.last_reply.text = f"{self.last_reply.text}\n\n{text}"

    def ask(self, prompt: str) -> ChatReply:
        """Ask `prompt` and return the whole answer."""
        for _ in self.stream(prompt):
            pass
        assert self.last_reply is not None
        return self.last_reply

    def _reply(
        self,
        text: str,
        inputs: Any,
        new_ids: torch.Tensor,
        states: GenerationStates | None = None,
    ) -> ChatReply:
        reply = ChatReply(text=text, boxes=parse_boxes(text))
        if self.model.mask_head is None or self.model.config.seg_token_id not in new_ids:
            return reply
        if not self.images:
            # A text-only conversation: a [SEG] has nothing to segment (the answer keeps it).
            logger.info("the answer has a [SEG] but the conversation has no image: no mask")
            return reply
        logits, image_index = masks_from_generation(self.model, inputs, new_ids, states)
        phrases = parse_seg_phrases(text)
        for k in range(logits.shape[0]):
            reply.mask_images.append(int(image_index[k]))
            image = self.images[reply.mask_images[-1]]
            grid = image.data.shape[1:]
            mask = F.interpolate(logits[k][None, None].float(), size=grid, mode="bilinear")[0, 0]
            reply.masks.append((mask > 0).cpu().numpy())
            georeferenced = image.crs is not None and image.transform is not None
            reply.mask_areas.append(
                mask_area(
                    reply.masks[-1],
                    transform=image.transform if georeferenced else None,
                    crs=image.crs if georeferenced else None,
                    valid=image.valid_mask,
                )
            )
            reply.mask_phrases.append(phrases[k] if k < len(phrases) else None)
        return reply


def check_images(
    sources: Sequence[str | Path | Sequence[str | Path]],
    image_processor: SkyEyeImageProcessor,
    *,
    read_size: int = GenerationSettings.read_size,
    read_kwargs: Sequence[dict[str, Any]] | None = None,
) -> list[RasterImage]:
    """Read every image and check that the model can take it, without the model.

    The wavelength rules (SAR placeholder, one wavelength per band) come from the image
    processor (`preprocessor_config.json`), so a bad image fails before a slow model load.

    Raises:
        ValueError / RasterReadError: one line naming the file, the problem and the fix.
    """
    images = []
    for index, source in enumerate(sources):
        kwargs = dict(read_kwargs[index]) if read_kwargs else {}
        kwargs.setdefault("max_size", read_size)
        kwargs.setdefault("sar_wavelength", image_processor.sar_wavelength)
        image = read_raster(source, **kwargs)
        try:
            image_processor([image])
        except ValueError as err:
            message = str(err)
            raise ValueError(message if str(source) in message else f"{source}: {message}") from None
        images.append(image)
    return images


def bf16_matmul_is_fast(device: str) -> bool:
    """Whether bfloat16 matrix products are faster than float32 ones on ``device``: on GPUs,
    and on CPUs with AVX512-BF16 or AMX instructions (elsewhere bfloat16 is emulated)."""
    if not device.startswith("cpu"):
        return True
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch >= 2.3
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def chat_dtype(name: str, device: str) -> torch.dtype:
    """The weights dtype of a ``--dtype`` choice: "auto" is bfloat16 where its matrix products
    are fast (`bf16_matmul_is_fast`), float32 elsewhere; other names as they say."""
    if name == "auto":
        return torch.bfloat16 if bf16_matmul_is_fast(device) else torch.float32
    return torch_dtype(name)


def load_chat(
    model: str | Path = "skyeye-tiny",
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    llm_dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
    settings: GenerationSettings | None = None,
) -> ChatSession:
    """Load a model and its processor by name, folder or hub id, and open a session.

    llm_dtype: the LLM's dtype where it should differ from ``dtype`` (e.g. bfloat16 matrix
    products for the LLM beside a float32 tower and mask decoder, whose full-resolution
    convolutions are slow in bfloat16 on CPUs).

    Raises `ModelFolderError` (one line: the file and the fix) for an incomplete or damaged
    folder, before loading anything.
    """
    model = resolve_model_folder(model)
    check_model_folder(model)
    loaded = SkyEyeForConditionalGeneration.from_pretrained(
        model, device=device, dtype=dtype, cache_dir=cache_dir, merge_adapter=True
    )
    if llm_dtype is not None:
        loaded.language_model.to(llm_dtype)
    loaded.eval()
    processor = SkyEyeProcessor.from_pretrained(model)
    return ChatSession(loaded, processor, settings)
