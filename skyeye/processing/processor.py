"""`SkyEyeProcessor`: chat template, `<image>` expansion, tokenisation and training labels.

Like transformers' Llava processor, the processor (not the model) expands each `<image>` in the
text into `num_image_tokens` copies of the image token, so the model only has to check that the
number of image positions matches the number of image features it computed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase

from skyeye.errors import PromptTooLongError
from skyeye.io.raster import RasterImage
from skyeye.processing.image_processor import SkyEyeImageProcessor

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
PROCESSOR_CONFIG = "processor_config.json"

Message = dict[str, str]


class SkyEyeProcessor:
    """Turns conversations and images into model inputs.

    Args:
        image_processor: resizes and normalises rasters into `pixel_values` + `wavelengths`.
        tokenizer: the LLM's tokenizer; gains `image_token` as a special token if missing.
        num_image_tokens: positions each image occupies (the model config's `num_image_tokens`).
        image_token: the placeholder users write for an image.
        max_length: context window of the LLM; longer inputs raise `PromptTooLongError`.
    """

    def __init__(
        self,
        image_processor: SkyEyeImageProcessor,
        tokenizer: PreTrainedTokenizerBase,
        *,
        num_image_tokens: int,
        image_token: str = "<image>",
        max_length: int | None = None,
    ) -> None:
        if image_token not in tokenizer.get_vocab():
            tokenizer.add_tokens([image_token], special_tokens=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if tokenizer.chat_template is None:
            raise ValueError(
                "the tokenizer has no chat template; SkyEye uses the LLM's own template, so load "
                "an instruction-tuned LLM or set tokenizer.chat_template"
            )
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.num_image_tokens = num_image_tokens
        self.image_token = image_token
        self.max_length = max_length

    @property
    def image_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(self.image_token))

    # ------------------------------------------------------------------ text
    def apply_chat_template(
        self, messages: Sequence[Message], *, add_generation_prompt: bool = False
    ) -> str:
        """Render `messages` ({"role", "content"} dicts) with the LLM's own chat template."""
        for index, message in enumerate(messages):
            if message.get("role") not in ("system", "user", "assistant"):
                raise ValueError(
                    f"message {index} has role {message.get('role')!r}; use system/user/assistant"
                )
            if not isinstance(message.get("content"), str):
                raise ValueError(f"message {index} needs a string 'content'")
        return self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def expand_image_tokens(self, text: str) -> str:
        """Replace each `<image>` with `num_image_tokens` image tokens."""
        return text.replace(self.image_token, self.image_token * self.num_image_tokens)

    def _check_length(self, length: int) -> None:
        if self.max_length is not None and length > self.max_length:
            raise PromptTooLongError(
                f"the conversation is {length} tokens but the model's context holds "
                f"{self.max_length}; start a new conversation (reset), shorten the prompt, or "
                f"use fewer images (each takes {self.num_image_tokens} tokens)"
            )

    def _images(
        self, images: Sequence[RasterImage] | None, text: str
    ) -> dict[str, list[torch.Tensor]]:
        images = list(images or [])
        placeholders = text.count(self.image_token)
        if placeholders != len(images):
            raise ValueError(
                f"the text has {placeholders} {self.image_token} placeholder(s) but "
                f"{len(images)} image(s) were given; write one {self.image_token} per image"
            )
        if not images:
            return {}
        features = self.image_processor(images, return_tensors="pt")
        return {
            "pixel_values": list(features["pixel_values"]),
            "wavelengths": list(features["wavelengths"]),
        }

    # ------------------------------------------------------------ inference
    def __call__(
        self,
        messages: Sequence[Message] | str,
        images: Sequence[RasterImage] | None = None,
        *,
        add_generation_prompt: bool = True,
    ) -> BatchFeature:
        """Encode one prompt for generation.

        Args:
            messages: a conversation (list of {"role", "content"}) or an already rendered string.
            images: one raster per `<image>` placeholder, in order.

        Returns:
            BatchFeature with `input_ids` (1, L), `attention_mask` (1, L) and, when images are
            given, `pixel_values` (list of (C_i, S, S)) and `wavelengths` (list of (C_i,)).
        """
        text = (
            messages
            if isinstance(messages, str)
            else self.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        )
        data: dict[str, Any] = self._images(images, text)
        ids = self.tokenizer(self.expand_image_tokens(text), add_special_tokens=False)["input_ids"]
        self._check_length(len(ids))
        data["input_ids"] = torch.tensor([ids], dtype=torch.long)
        data["attention_mask"] = torch.ones_like(data["input_ids"])
        return BatchFeature(data)

    # -------------------------------------------------------------- training
    def build_training_example(
        self, messages: Sequence[Message], images: Sequence[RasterImage] | None = None
    ) -> dict[str, Any]:
        """Tokenise a full conversation with labels on the assistant turns only.

        Each assistant reply is supervised together with the token that closes its turn (the
        template's end-of-turn marker), so the model learns to stop.

        Returns:
            dict with `input_ids` (L,), `attention_mask` (L,), `labels` (L,) with -100 outside
            assistant replies, and `pixel_values` / `wavelengths` lists when images are given.
        """
        expanded = [
            {"role": m["role"], "content": self.expand_image_tokens(m["content"])} for m in messages
        ]
        if not any(m["role"] == "assistant" for m in expanded):
            raise ValueError("a training conversation needs at least one assistant turn")
        text = self.apply_chat_template(expanded)
        spans: list[tuple[int, int]] = []
        cursor = 0
        for message in expanded:
            start = text.find(message["content"], cursor)
            if start < 0:
                raise ValueError(
                    "the chat template rewrote a message's content, so its tokens cannot be "
                    f"located for labelling: {message['content'][:60]!r}"
                )
            end = start + len(message["content"])
            if message["role"] == "assistant":
                spans.append((start, end))
            cursor = end
        data: dict[str, Any] = self._images(images, "".join(m["content"] for m in messages))
        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoding["input_ids"]
        self._check_length(len(ids))
        labels = [IGNORE_INDEX] * len(ids)
        offsets = encoding["offset_mapping"]
        for start, end in spans:
            closing_done = False
            for index, (token_start, token_end) in enumerate(offsets):
                if start <= token_start < end or (token_start < start < token_end):
                    labels[index] = ids[index]
                elif token_start >= end and not closing_done:
                    labels[index] = ids[index]
                    closing_done = True
        data["input_ids"] = torch.tensor(ids, dtype=torch.long)
        data["attention_mask"] = torch.ones_like(data["input_ids"])
        data["labels"] = torch.tensor(labels, dtype=torch.long)
        return data

    def decode(
        self, token_ids: Sequence[int] | torch.Tensor, *, skip_special_tokens: bool = True
    ) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)

    # ----------------------------------------------------------- save / load
    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(folder)
        self.image_processor.save_pretrained(folder)
        settings = {
            "processor_class": type(self).__name__,
            "num_image_tokens": self.num_image_tokens,
            "image_token": self.image_token,
            "max_length": self.max_length,
        }
        (folder / PROCESSOR_CONFIG).write_text(json.dumps(settings, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> SkyEyeProcessor:
        """Load a processor saved by `save_pretrained` (a model folder or preset name)."""
        from skyeye.models import resolve_model_folder

        folder = resolve_model_folder(folder)
        config_path = folder / PROCESSOR_CONFIG
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{folder} has no {PROCESSOR_CONFIG}; is it a SkyEye model folder?"
            )
        settings = json.loads(config_path.read_text())
        settings.pop("processor_class", None)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        image_processor = SkyEyeImageProcessor.from_pretrained(str(folder))
        return cls(image_processor, tokenizer, **settings)
