"""Encode a conversation so that only the chat template and the API create structure.

A user's text is data: typed `<|im_start|>assistant`, `<|im_end|>`, `<image>`, `[SEG]` or `<p>`
must not become the special tokens that open turns, place images or ask for masks. So the
conversation is rendered with the LLM's own template around stand-ins for each message's
content, and the pieces are encoded separately:

* the template's own text (turn markers, role names) with the tokenizer as usual: real tokens;
* images as image-token runs: an image part (`{"type": "image"}`, as in transformers' chat
  messages) or, in a message whose content is a plain string, an `<image>` placeholder (the
  LLaVA convention, which the instruction data also uses). Text parts
  (`{"type": "text", "text": ...}`) never place images: untrusted text (what a user types) goes
  in text parts;
* user and system text with no added token at all (`encode_plain`: the tokenizer's normalizer,
  pre-tokenizer and model, skipping its added-token matching);
* assistant text with the grounding tokens (`[SEG]`, `<p>`, `</p>`) real, since the model
  writes them, and everything else plain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from transformers import PreTrainedTokenizerBase

from skyeye.constants import GROUNDING_TOKENS

#: A message's content: plain text, or a list of {"type": "text", "text": ...} / {"type": "image"}.
Content = str | list[dict[str, Any]]

# Private-use code points stand in for message contents while the template renders.
_STAND_IN = "\ue000{}\ue001"
_STAND_IN_RE = re.compile("\ue000(\\d+)\ue001")


def content_parts(content: Content, image_token: str) -> list[dict[str, Any]]:
    """`content` as a list of text and image parts, adjacent texts joined, empty texts dropped.

    A string's `image_token` placeholders are image parts; a text part's are characters.
    """
    if isinstance(content, str):
        return split_placeholders(content, image_token)
    if not isinstance(content, list):
        raise ValueError(f"message content must be a string or a list of parts, got {content!r}")
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image":
            parts.append({"type": "image"})
        elif kind == "text" and isinstance(part.get("text"), str):
            if parts and parts[-1]["type"] == "text":
                parts[-1] = {"type": "text", "text": parts[-1]["text"] + part["text"]}
            elif part["text"]:
                parts.append({"type": "text", "text": part["text"]})
        else:
            raise ValueError(
                f"unknown content part {part!r}: use {{'type': 'text', 'text': ...}} or "
                "{'type': 'image'}"
            )
    return parts


def split_placeholders(text: str, image_token: str) -> list[dict[str, Any]]:
    """Parts of a text whose `image_token` placeholders mark images (LLaVA's format)."""
    parts: list[dict[str, Any]] = []
    for k, piece in enumerate(text.split(image_token)):
        if k:
            parts.append({"type": "image"})
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def content_text(content: Content, image_token: str) -> str:
    """The content as one string, each image part written as `image_token` (for display)."""
    if isinstance(content, str):
        return content
    return "".join(
        image_token if p["type"] == "image" else p["text"]
        for p in content_parts(content, image_token)
    )


def count_images(messages: Sequence[dict[str, Any]], image_token: str) -> int:
    """Number of images a conversation places (image parts and string placeholders)."""
    return sum(
        p["type"] == "image"
        for m in messages
        for p in content_parts(m.get("content", ""), image_token)
    )


def encode_plain(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of `text` with no added token matched: a typed `<|im_end|>` stays characters.

    Equal to the usual encoding for text that holds no added token.
    """
    if not text:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer: split special tokens, then check nothing slipped in
        ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        added = set(tokenizer.added_tokens_decoder)
        if any(i in added for i in ids):
            raise ValueError(
                "this tokenizer cannot encode text without its added tokens; use a fast tokenizer"
            )
        return list(ids)
    normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
    pieces = (
        [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]
        if backend.pre_tokenizer
        else [normalized]
    )
    return [token.id for piece in pieces for token in backend.model.tokenize(piece)]


def encode_with(tokenizer: PreTrainedTokenizerBase, text: str, allowed: Sequence[str]) -> list[int]:
    """Ids of `text` with only the added tokens in `allowed` real; the rest is plain text."""
    vocab = tokenizer.added_tokens_encoder  # small, unlike get_vocab()
    allowed = [t for t in allowed if t in vocab]
    if not allowed:
        return encode_plain(tokenizer, text)
    ids: list[int] = []
    pattern = "(" + "|".join(re.escape(t) for t in sorted(allowed, key=len, reverse=True)) + ")"
    for k, piece in enumerate(re.split(pattern, text)):
        if k % 2:
            ids.append(int(vocab[piece]))
        else:
            ids.extend(encode_plain(tokenizer, piece))
    return ids


@dataclass
class EncodedConversation:
    """`input_ids` (L,) and, per id, whether it is assistant content or the token closing it."""

    input_ids: list[int]
    supervised: list[bool]


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[dict[str, Any]],
    *,
    image_token: str,
    num_image_tokens: int,
    add_generation_prompt: bool,
) -> EncodedConversation:
    """Render `messages` with the tokenizer's chat template and encode them piece by piece.

    Returns ids with each image part expanded to `num_image_tokens` image tokens; `supervised`
    marks assistant content and the first template token after it (the end-of-turn marker).
    """
    image_token_id = cast(int, tokenizer.convert_tokens_to_ids(image_token))
    stand_ins = [
        {"role": m["role"], "content": _STAND_IN.format(k)} for k, m in enumerate(messages)
    ]
    rendered = cast(
        str,
        tokenizer.apply_chat_template(
            stand_ins, tokenize=False, add_generation_prompt=add_generation_prompt
        ),
    )
    pieces = _STAND_IN_RE.split(rendered)
    order = [int(k) for k in pieces[1::2]]
    if order != list(range(len(messages))):
        raise ValueError(
            "the chat template rewrote or reordered the messages' content, so user text cannot "
            "be told apart from the template's markers; use a template that writes each "
            "message's content as given"
        )
    ids: list[int] = []
    supervised: list[bool] = []
    close_turn = False
    for k, piece in enumerate(pieces):
        if k % 2 == 0:  # the template's own text
            template_ids = tokenizer(piece, add_special_tokens=False)["input_ids"] if piece else []
            for j, token in enumerate(template_ids):
                ids.append(token)
                supervised.append(close_turn and j == 0)
            close_turn = close_turn and not template_ids
            continue
        message = messages[int(piece)]
        role = message["role"]
        allowed = GROUNDING_TOKENS if role == "assistant" else ()
        for part in content_parts(message["content"], image_token):
            if part["type"] == "image":
                ids.extend([image_token_id] * num_image_tokens)
                supervised.extend([False] * num_image_tokens)
            else:
                new = encode_with(tokenizer, part["text"], allowed)
                ids.extend(new)
                supervised.extend([role == "assistant"] * len(new))
        close_turn = role == "assistant"
    return EncodedConversation(ids, supervised)
