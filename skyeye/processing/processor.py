"""`SkyEyeProcessor`: chat template, `<image>` expansion, tokenisation and training labels.

Like transformers' Llava processor, the processor (not the model) expands each image of the
conversation (an `<image>` placeholder in a string content, or an `{"type": "image"}` part)
into `num_image_tokens` copies of the image token, so the model only has to check that the
number of image positions matches the number of image features it computed. Text is encoded as
text (`chat_encoding`): typed turn markers, `[SEG]` or `<p>` cannot open turns or ask for masks,
and a `{"type": "text"}` part cannot place images either.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase

from skyeye.constants import IGNORE_INDEX, IMAGE_TOKEN
from skyeye.errors import PromptTooLongError
from skyeye.io.raster import RasterImage
from skyeye.processing.chat_encoding import (
    EncodedConversation,
    content_parts,
    content_text,
    count_images,
    encode_conversation,
)
from skyeye.processing.image_processor import SkyEyeImageProcessor

logger = logging.getLogger(__name__)

PROCESSOR_CONFIG = "processor_config.json"

#: {"role": ..., "content": text or a list of text/image parts}
Message = dict[str, Any]


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
        image_token: str = IMAGE_TOKEN,
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
        return cast(int, self.tokenizer.convert_tokens_to_ids(self.image_token))

    # ------------------------------------------------------------------ text
    def _check_messages(self, messages: Sequence[Message]) -> None:
        for index, message in enumerate(messages):
            if message.get("role") not in ("system", "user", "assistant"):
                raise ValueError(
                    f"message {index} has role {message.get('role')!r}; use system/user/assistant"
                )
            content = message.get("content")
            if not isinstance(content, (str, list)):
                raise ValueError(
                    f"message {index} needs a 'content' string or list of text/image parts"
                )
            content_parts(content, self.image_token)  # raises on an unknown part

    def apply_chat_template(
        self, messages: Sequence[Message], *, add_generation_prompt: bool = False
    ) -> str:
        """Render `messages` with the LLM's own chat template, for display and length estimates.

        Image parts are written as `image_token`. The model's input is built by `__call__` /
        `build_training_example`, which keep user text from becoming special tokens.
        """
        self._check_messages(messages)
        flat = [
            {"role": m["role"], "content": content_text(m["content"], self.image_token)}
            for m in messages
        ]
        text = self.tokenizer.apply_chat_template(
            flat, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return cast(str, text)

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

    def image_features(self, images: Sequence[RasterImage]) -> dict[str, list[torch.Tensor]]:
        """The image processor's tensors of ``images`` (pixel_values, wavelengths and, with a
        hires_size, pixel_values_hires: one entry per image), to pass back to `__call__` as
        ``image_features`` while the images stay the same (a chat's later turns)."""
        if not images:
            return {}
        features = self.image_processor(list(images), return_tensors="pt")
        # pixel_values_hires too, when the image processor makes them (hires mask decoders).
        return {name: list(values) for name, values in features.items()}

    def _images(
        self,
        images: Sequence[RasterImage] | None,
        placeholders: int,
        features: dict[str, list[torch.Tensor]] | None = None,
    ) -> dict[str, list[torch.Tensor]]:
        images = list(images or [])
        if placeholders != len(images):
            raise ValueError(
                f"the conversation has {placeholders} {self.image_token} placeholder(s) or image "
                f"part(s) but {len(images)} image(s) were given; place each image with one "
                f"{self.image_token} or one {{'type': 'image'}} part"
            )
        if features is not None:
            if any(len(v) != len(images) for v in features.values()):
                raise ValueError("image_features were computed for other images: recompute them")
            return {name: list(values) for name, values in features.items()}
        return self.image_features(images)

    def _encode(
        self, messages: Sequence[Message], *, add_generation_prompt: bool
    ) -> EncodedConversation:
        self._check_messages(messages)
        encoded = encode_conversation(
            self.tokenizer,
            messages,
            image_token=self.image_token,
            num_image_tokens=self.num_image_tokens,
            add_generation_prompt=add_generation_prompt,
        )
        self._check_length(len(encoded.input_ids))
        return encoded

    # ------------------------------------------------------------ inference
    def __call__(
        self,
        messages: Sequence[Message] | str,
        images: Sequence[RasterImage] | None = None,
        *,
        add_generation_prompt: bool = True,
        image_features: dict[str, list[torch.Tensor]] | None = None,
    ) -> BatchFeature:
        """Encode one prompt for generation.

        Args:
            messages: a conversation: {"role", "content"} dicts whose content is a string
                (each `<image>` in it places the next image, as in LLaVA) or a list of parts
                `{"type": "text", "text": ...}` / `{"type": "image"}`. Text parts are pure text,
                so put what a user types there. Turn markers, `[SEG]` and `<p>` typed in any
                user or system text stay characters; assistant text keeps its grounding tokens.
                A plain string instead of a list is an already rendered, trusted prompt.
            images: one raster per image placed, in order.
            image_features: `image_features(images)` computed earlier for these same images
                (skips the image processor; a chat's later turns).

        Returns:
            BatchFeature with `input_ids` (1, L), `attention_mask` (1, L) and, when images are
            given, `pixel_values` (list of (C_i, S, S)) and `wavelengths` (list of (C_i,)), and
            `pixel_values_hires` (list of (C_i, H_i, W_i)) when the image processor has a
            `hires_size`.
        """
        if isinstance(messages, str):
            data: dict[str, Any] = self._images(images, messages.count(self.image_token))
            ids = self.tokenizer(self.expand_image_tokens(messages), add_special_tokens=False)[
                "input_ids"
            ]
            self._check_length(len(ids))
        else:
            data = self._images(
                images, count_images(messages, self.image_token), image_features
            )
            ids = self._encode(messages, add_generation_prompt=add_generation_prompt).input_ids
        data["input_ids"] = torch.tensor([ids], dtype=torch.long)
        data["attention_mask"] = torch.ones_like(data["input_ids"])
        return BatchFeature(data)

    # -------------------------------------------------------------- training
    def build_training_example(
        self, messages: Sequence[Message], images: Sequence[RasterImage] | None = None
    ) -> dict[str, Any]:
        """Tokenise a full conversation with labels on the assistant turns only.

        `messages` as for `__call__` (the instruction data's `<image>` placeholders place the
        images). Each assistant reply is supervised together with the
        token that closes its turn (the template's end-of-turn marker), so the model learns to
        stop.

        Returns:
            dict with `input_ids` (L,), `attention_mask` (L,), `labels` (L,) with -100 outside
            assistant replies, and `pixel_values` / `wavelengths` lists when images are given.
        """
        if not any(m.get("role") == "assistant" for m in messages):
            raise ValueError("a training conversation needs at least one assistant turn")
        data: dict[str, Any] = self._images(images, count_images(messages, self.image_token))
        encoded = self._encode(messages, add_generation_prompt=False)
        ids = encoded.input_ids
        labels = [
            token if keep else IGNORE_INDEX
            for token, keep in zip(ids, encoded.supervised, strict=True)
        ]
        data["input_ids"] = torch.tensor(ids, dtype=torch.long)
        data["attention_mask"] = torch.ones_like(data["input_ids"])
        data["labels"] = torch.tensor(labels, dtype=torch.long)
        return data

    def decode(
        self, token_ids: Sequence[int] | torch.Tensor, *, skip_special_tokens: bool = True
    ) -> str:
        ids = token_ids if isinstance(token_ids, torch.Tensor) else list(token_ids)
        return cast(str, self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens))

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
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        **ignored: Any,
    ) -> SkyEyeProcessor:
        """Load a processor saved by `save_pretrained` (a model folder, bundled model or hub id).

        Other transformers arguments (`AutoProcessor` passes `trust_remote_code`, `_from_auto`,
        ...) have no effect: the code is SkyEye's own, never a folder's.
        """
        from skyeye.bundled import resolve_model_folder

        folder = resolve_model_folder(folder, revision=revision, token=token)
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
