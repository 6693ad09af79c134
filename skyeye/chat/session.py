"""`ChatSession`: multi-turn conversation state and streamed generation.

One session holds one conversation (its images and turns); the terminal chat and the Gradio demo
each create one per user, so two users never share state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache, StoppingCriteriaList, TextIteratorStreamer

from skyeye.bundled import resolve_model_folder
from skyeye.chat.change_answer import change_reply
from skyeye.chat.change_seg import change_entries
from skyeye.chat.choices import choice_answer
from skyeye.chat.cover_choice import cover_answer
from skyeye.chat.decoding import DEFAULT_SYSTEM_PROMPT as DEFAULT_SYSTEM_PROMPT
from skyeye.chat.decoding import GenerationSettings as GenerationSettings
from skyeye.chat.decoding import (
    StopStrings,
    StopWhenSet,
    first_stop,
    held_back,
    tokens_before,
)
from skyeye.chat.generation import AnswerGenerator, generate_with_hooks
from skyeye.chat.grounded import direct_answer, measure_answer
from skyeye.chat.named_image import named_image_reply
from skyeye.chat.prefix_cache import PrefixCache
from skyeye.chat.reply import ChatReply as ChatReply
from skyeye.chat.reply import add_masks
from skyeye.constants import SEG_TOKEN
from skyeye.errors import GenerationCancelled, NoImageError
from skyeye.grounding.parse import parse_boxes, parse_seg_phrases
from skyeye.io.raster import RasterImage, read_raster
from skyeye.modeling.folder_check import check_model_folder
from skyeye.modeling.generation_hooks import GenerationStates, masks_from_generation
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.processing.chat_encoding import content_text
from skyeye.processing.dated_images import dated_image_parts
from skyeye.processing.processor import SkyEyeProcessor

logger = logging.getLogger(__name__)


class ChatSession:
    """A conversation with a SkyEye model about one or more images.

    require_image: refuse a question while the conversation holds no image (`NoImageError`):
    the model answers from images and would invent one. False only for measuring the model
    without its image (a blind baseline, text-only prompts).
    """

    def __init__(
        self,
        model: SkyEyeForConditionalGeneration,
        processor: SkyEyeProcessor,
        settings: GenerationSettings | None = None,
        *,
        require_image: bool = True,
    ) -> None:
        self.model = model
        self.processor = processor
        self.settings = settings or GenerationSettings()
        self.require_image = require_image
        image_processor = processor.image_processor
        if getattr(model.mask_head, "needs_pixels", False) and image_processor.hires_size is None:
            # A decoder that refines on pixels gets them on the grid images are read at.
            image_processor.hires_size = self.settings.read_size
        self.images: list[RasterImage] = []
        # content: text, or text and image parts (see SkyEyeProcessor.__call__)
        self.messages: list[dict[str, Any]] = []
        self.last_reply: ChatReply | None = None
        self._pending_images = 0
        self._prefix = PrefixCache()
        # What runs the model for an answer (the API server puts its batcher here).
        self.generator: AnswerGenerator = generate_with_hooks
        # The processor's tensors of each image, by identity (a replaced image is a new object):
        # computed once, when the image is added (the band check), and reused by every turn.
        self._tensors: dict[int, tuple[RasterImage, dict[str, torch.Tensor]]] = {}

    # -------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget the images and the turns."""
        self.images.clear()
        self.messages.clear()
        self.last_reply = None
        self._pending_images = 0
        self._prefix.clear()
        self._tensors.clear()

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
        self.add_images([image])
        return image

    def add_images(self, images: Sequence[RasterImage], *, answered: bool = False) -> None:
        """Attach read images to the next user turn, or (``answered``) record them as images of
        earlier turns (a conversation rebuilt from its messages, as the API server does).

        Each image is processed here, once: the tensors every later turn reuses, and the check
        that its bands map to wavelengths (ValueError now, not at the next question).
        """
        for image in images:
            self._image_tensors(image)
        if answered and self._pending_images:
            raise ValueError("answered images go before the pending ones: add them first")
        self.images.extend(images)
        if not answered:
            self._pending_images += len(images)

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
                self._image_tensors(new)  # the check add_image makes
                self.images[k] = new
                self._tensors.pop(id(old), None)
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

    def stream(
        self, prompt: str, cancel: threading.Event | None = None
    ) -> Generator[str, None, None]:
        """Ask `prompt` and yield the answer's text as it is generated.

        After the iterator is exhausted, `last_reply` holds the full `ChatReply`. A reader that
        stops early (closes the iterator, e.g. a closed browser tab) stops the generation and
        leaves the session as before the question: no half turn, the images still pending.
        `cancel` does the same from any thread (e.g. the HTTP client went away while another
        thread drives the iterator): generation stops at the next token and the iterator raises
        `GenerationCancelled`.

        Raises:
            NoImageError: the conversation holds no image (and `require_image` is set).
        """
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        if self.require_image and not self.images:
            raise NoImageError(
                "no image in the conversation: add an image first (/image PATH in the terminal "
                "chat, ChatSession.add_image in Python), then ask about it"
            )
        # The images attach as image parts; the prompt is text, so a typed `<image>`, `[SEG]` or
        # `<|im_end|>` stays characters (the processor never turns user text into structure).
        # Several dated images are named with their dates, as the change records are written.
        content: list[dict[str, Any]] = dated_image_parts(
            [image.datetime for image in self.pending_images]
        ) + [{"type": "text", "text": prompt}]
        self.messages.append({"role": "user", "content": content})
        try:
            inputs = self.processor(
                self._conversation(),
                self.images,
                add_generation_prompt=True,
                image_features=self._image_features(),
            )
        except Exception:
            self.messages.pop()
            raise
        inputs = inputs.to(self.model.device) if hasattr(inputs, "to") else inputs
        tokenizer = self.processor.tokenizer
        chosen = self._choose(prompt, inputs, cancel)
        if chosen is not None:
            yield chosen
            return
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}
        abandoned = threading.Event()
        stops = list(self.settings.stop)

        def decode(ids: list[int]) -> str:
            return str(tokenizer.decode(ids, skip_special_tokens=True))

        # The conversation so far as a KV cache (a follow-up feeds only its new tokens).
        image_positions = self.model.model.get_placeholder_mask(inputs["input_ids"])
        taken = self._prefix.take(inputs["input_ids"], image_positions)
        reused = taken is not None
        cache = taken if taken is not None else DynamicCache()

        criteria = StoppingCriteriaList([StopWhenSet(abandoned)])
        if cancel is not None:
            criteria.append(StopWhenSet(cancel))
        if stops:
            criteria.append(StopStrings(decode, stops, inputs["input_ids"].shape[1]))

        def run() -> None:
            try:
                # The answer's [SEG] masks are decoded from the generation's own hidden states.
                result["ids"], states = self.generator(
                    self.model,
                    inputs,
                    streamer=streamer,
                    stopping_criteria=criteria,
                    cache=cache,
                    generate_kwargs=self.settings.generate_kwargs(),
                )
                if reused and not states.vision_calls and self._prefix.vision is not None:
                    states.vision_calls.append(self._prefix.vision)  # the tower did not run
                result["states"] = states
            except BaseException as err:  # surfaced in the caller's thread below
                result["error"] = err
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        pieces: list[str] = []
        shown = 0  # characters of the answer streamed so far
        cut = -1  # where the first stop string starts, once one appeared
        try:
            for piece in streamer:
                if cancel is not None and cancel.is_set():
                    break
                pieces.append(piece)
                # Text after a [SEG] may state what its mask measures (a share, a yes/no): it is
                # held back until the mask is measured, then streamed as stated below.
                joined = "".join(pieces)
                seg = joined.find(SEG_TOKEN)
                limit = len(joined) if seg < 0 else seg + len(SEG_TOKEN)
                if stops:
                    # Nothing from a stop string on is shown; a possible start of one waits.
                    cut = first_stop(joined, stops)
                    limit = min(limit, cut if cut >= 0 else len(joined) - held_back(joined, stops))
                if limit > shown:
                    yield joined[shown:limit]
                    shown = limit
        except GeneratorExit:
            # Abandoned mid-answer: forget the question so the next one starts clean.
            abandoned.set()
            _join(worker)
            self.messages.pop()
            raise
        finally:
            _join(worker)
        if cancel is not None and cancel.is_set():
            self.messages.pop()
            raise GenerationCancelled("the answer was cancelled by its caller")
        if "error" in result:
            self.messages.pop()
            raise result["error"]
        new_ids = result["ids"]
        states = result.get("states")
        self._prefix.keep(
            torch.cat([inputs["input_ids"], new_ids.to(inputs["input_ids"].device)], dim=1),
            cache,
            None if states is None else states.vision,
        )
        joined = "".join(pieces)
        if cut >= 0:
            # The stop string and what followed it go, with their tokens (and their [SEG]s).
            new_ids = new_ids[:, : tokens_before(decode, new_ids[0].tolist(), cut)]
            joined = joined[:cut]
        text = joined.strip()
        self._pending_images = 0
        reply = self._reply(text, inputs, new_ids, states)
        reply.finish_reason = "stop" if cut >= 0 else self._finish_reason(result["ids"])
        reply.prompt_tokens, reply.completion_tokens = (
            inputs["input_ids"].shape[1],
            new_ids.shape[1],
        )
        measured = self.settings.measure  # counts, boxes, shares; off: the raw LLM's words
        text, note = measure_answer(self, prompt, reply, inputs) if measured else (reply.text, "")
        if note:
            text = f"{text} {note}"
        streamed = joined[:shown].lstrip()
        if text.startswith(streamed):
            if len(text) > len(streamed):
                yield text[len(streamed) :]
        elif note:
            # Streamed text cannot be taken back: the measured figures follow it.
            yield f" {note}"
        reply.text = text
        self.messages.append({"role": "assistant", "content": text})
        self.last_reply = reply

    def _image_tensors(self, image: RasterImage) -> dict[str, torch.Tensor]:
        """The processor's tensors of one image (pixel_values, wavelengths, ...), computed once."""
        hit = self._tensors.get(id(image))
        if hit is None or hit[0] is not image:
            features = self.processor.image_features([image])
            hit = (image, {name: values[0] for name, values in features.items()})
            self._tensors[id(image)] = hit
        return hit[1]

    def _image_features(self) -> dict[str, Any] | None:
        """The processor's tensors of the conversation's images, one entry per image."""
        if not self.images:
            return None
        per_image = [self._image_tensors(image) for image in self.images]
        return {name: [tensors[name] for tensors in per_image] for name in per_image[0]}

    def _choose(
        self, prompt: str, inputs: Any, cancel: threading.Event | None = None
    ) -> str | None:
        """Answer what the reader knows (sensor, bands: `skyeye.chat.grounded.direct_answer`), a
        change question by measurement (`skyeye.chat.change_answer`), 'which covers the most?'
        among decoder classes by their masks (`skyeye.chat.cover_choice`) or a multiple-choice
        question by option likelihood (`skyeye.chat.choices`, with mcq_scoring "likelihood"; a
        scene question about one image by the scene head where the model has one and ``measure``):
        recorded as the turn's reply; None when none applies."""
        measure, reply = self.settings.measure, None
        try:
            text = direct_answer(prompt, self) if measure else None
            if text is None and measure:
                reply = named_image_reply(self, prompt, cancel)
            if text is None and reply is None and measure:
                reply = change_reply(self, prompt, inputs)
            if text is None and reply is None and measure:
                text = cover_answer(self, prompt)
            if text is None and reply is None and self.settings.mcq_scoring == "likelihood":
                tokenizer, scoring = self.processor.tokenizer, self.settings.choice_scoring
                text = choice_answer(
                    self.model,
                    tokenizer,
                    inputs,
                    prompt,
                    scoring,
                    self.processor.max_length,
                    scene_head=measure,
                )
        except Exception:
            self.messages.pop()
            raise
        if reply is None and text is None:
            return None
        reply = reply or ChatReply(text=str(text))
        self._pending_images = 0
        self.messages.append({"role": "assistant", "content": reply.text})
        written = self.processor.tokenizer(reply.text, add_special_tokens=False)["input_ids"]
        reply.prompt_tokens, reply.completion_tokens = inputs["input_ids"].shape[1], len(written)
        self.last_reply = reply
        return reply.text

    def _finish_reason(self, new_ids: torch.Tensor) -> str:
        """Finish reason: "length" when the answer filled `max_new_tokens` without an end token."""
        config = getattr(self.model.language_model, "generation_config", None)
        ends = getattr(config, "eos_token_id", None)
        end_ids = set(ends if isinstance(ends, list) else [ends])
        end_ids.add(self.processor.tokenizer.eos_token_id)
        full = new_ids.shape[1] >= self.settings.max_new_tokens
        return "length" if full and int(new_ids[0, -1]) not in end_ids else "stop"

    def extend_answer(self, text: str) -> None:
        """Append `text` (e.g. a whole-scene analysis of the same question) to the last answer,
        so that later turns see it in the history and `last_reply.text` carries it."""
        if not self.messages or self.messages[-1]["role"] != "assistant":
            raise ValueError("no answer to extend: ask a question first")
        self.messages[-1]["content"] = f"{self.messages[-1]['content']}\n\n{text}"
        if self.last_reply is not None:
            self.last_reply.text = f"{self.last_reply.text}\n\n{text}"

    def ask(self, prompt: str, cancel: threading.Event | None = None) -> ChatReply:
        """Ask `prompt` and return the whole answer (`cancel`: as in `stream`)."""
        for _ in self.stream(prompt, cancel):
            pass
        assert self.last_reply is not None
        return self.last_reply

    def _reply(
        self,
        text: str,
        inputs: Any,
        new_ids: torch.Tensor,
        states: GenerationStates | None = None,
        images: Sequence[RasterImage] | None = None,
    ) -> ChatReply:
        """The reply ``text`` (its ids ``new_ids`` after the prompt ``inputs``) with the masks of
        its `[SEG]`s decoded and measured on ``images`` (those of ``inputs``; default the
        conversation's)."""
        reply = ChatReply(text=text, boxes=parse_boxes(text))
        if self.model.mask_head is None or self.model.config.seg_token_id not in new_ids:
            return reply
        if not self.images:
            # A text-only conversation: a [SEG] has nothing to segment (the answer keeps it).
            logger.info("the answer has a [SEG] but the conversation has no image: no mask")
            return reply
        entries = change_entries(self, text, new_ids)  # None: no change [SEG]
        logits, image_index = masks_from_generation(self.model, inputs, new_ids, states, entries)
        shown = self.images if images is None else images
        add_masks(reply, shown, logits, image_index, parse_seg_phrases(text), entries)
        return reply


def _join(worker: threading.Thread) -> None:
    """Wait for the generation thread, unless this is it (a generator closed by the garbage
    collector runs its cleanup in whichever thread collects it)."""
    if worker is not threading.current_thread():
        worker.join()


def load_chat(
    model: str | Path = "skyeye-tiny",
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    llm_dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
    settings: GenerationSettings | None = None,
    require_image: bool = True,
) -> ChatSession:
    """Load a model and its processor by name, folder or hub id, and open a session
    (`require_image`: as in `ChatSession`).

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
    return ChatSession(loaded, processor, settings, require_image=require_image)
