"""OpenAI chat messages -> a fresh `ChatSession` holding that conversation (the server is stateless).

Earlier turns are replayed as they were written (their images attached to their user turns);
the last message must be the user's question, which the caller then asks. A user message with
several images is a multi-date question: its images are dated (the file's own date, or the part's
``skyeye.date``), checked and put on the first image's grid as the chat does
(`skyeye.chat.multi_date.prepare_dated_images`; no overlap or dates out of order -> ValueError,
which the server answers with a 400).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from skyeye.chat.multi_date import prepare_dated_images
from skyeye.chat.session import ChatSession, GenerationSettings
from skyeye.errors import ServeRequestError
from skyeye.io.policy import DEFAULT_REQUEST_MAX_PIXELS
from skyeye.io.raster import RasterImage
from skyeye.processing.dated_images import dated_image_parts
from skyeye.serve.images import image_digest, part_date, read_image_part
from skyeye.serve.params import short_repr

ROLES = ("system", "developer", "user", "assistant")
NO_IMAGE = (
    "no image in the conversation: add an image_url part (a data URL, e.g. "
    "data:image/tiff;base64,...) to a user message; SkyEye answers only from an image"
)


def _parts(message: dict[str, Any], index: int) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if content is None:
        return []
    if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
        raise ServeRequestError(
            f"messages[{index}].content must be a string or a list of parts", param="messages"
        )
    return content


def _text_and_images(
    message: dict[str, Any], index: int, read: Any, images_allowed: bool
) -> tuple[str, list]:
    """(text, [(image, digest), ...]) of one message."""
    texts, images = [], []
    for j, part in enumerate(_parts(message, index)):
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise ServeRequestError(
                    f"messages[{index}].content[{j}].text must be a string", param="messages"
                )
            texts.append(part["text"])
        elif kind == "image_url":
            if not images_allowed:
                raise ServeRequestError(
                    f"messages[{index}]: only user messages may hold images", param="messages"
                )
            images.append(read(part, f"messages[{index}].content[{j}] (image)"))
        else:
            raise ServeRequestError(
                f"messages[{index}].content[{j}]: unsupported part type {short_repr(kind)}; "
                "use 'text' or 'image_url'",
                param="messages",
            )
    return "\n".join(texts), images


def _dated(images: list[tuple[RasterImage, str]]) -> list[tuple[RasterImage, str]]:
    """One user turn's (image, digest)s, several images of one place put on the first one's grid
    (`prepare_dated_images`). An aligned image's pixels depend on the whole group (cut to the
    common area, NaN where one lacks data), so its digest (the image-prefix cache's key) names the group too."""
    if len(images) < 2:
        return images
    prepared = prepare_dated_images([image for image, _ in images])
    if all(a is b for a, b in zip(prepared.images, (image for image, _ in images), strict=True)):
        return images  # undated photos without a georeference: left as they are
    group = ":".join(digest for _, digest in images)
    return [(image, image_digest(f"{group}:{k}", {}, 0)) for k, image in enumerate(prepared.images)]


def build_session(
    chat: ChatSession,
    messages: list[dict[str, Any]],
    settings: GenerationSettings,
    *,
    allow_files: Path | None,
    max_pixels: int | None = DEFAULT_REQUEST_MAX_PIXELS,
) -> tuple[ChatSession, str, list[str]]:
    """A new session over ``chat``'s model and processor with every turn but the last replayed.

    Returns (session, question, digests): ask ``question`` on the session to answer the request;
    ``digests`` identify ``session.images`` (`skyeye.serve.images.image_digest`, in order) for the
    server's image-prefix cache.
    """
    if not messages:
        raise ServeRequestError(
            "'messages' is empty: send at least one user message", param="messages"
        )
    processor = chat.processor

    def read(part: dict[str, Any], label: str) -> tuple[RasterImage, str]:
        image, digest = read_image_part(
            part,
            label,
            allow_files=allow_files,
            max_size=settings.read_size,
            sar_wavelength=processor.image_processor.sar_wavelength,
            max_pixels=max_pixels,
        )
        date = part_date(part, label)
        return (image if date is None else dataclasses.replace(image, datetime=date)), digest

    system: list[str] = []
    turns: list[tuple[str, str, list]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ServeRequestError(
                f"messages[{i}] must be an object with 'role' and 'content'", param="messages"
            )
        role = message.get("role")
        if role not in ROLES:
            raise ServeRequestError(
                f"messages[{i}].role {short_repr(role)} is not supported; use one of {list(ROLES)}",
                param="messages",
            )
        text, images = _text_and_images(message, i, read, role == "user")
        images = _dated(images)  # ValueError (no overlap, dates backwards): a 400
        if role in ("system", "developer"):
            system.append(text)
        else:
            turns.append((role, text, images))
    if not turns or turns[-1][0] != "user":
        raise ServeRequestError("the last message must be the user's question", param="messages")
    if not turns[-1][1].strip():
        raise ServeRequestError(
            "the last user message has no text: ask a question", param="messages"
        )
    if not any(images for _, _, images in turns):
        raise ServeRequestError(NO_IMAGE, param="messages")
    if system:
        settings = dataclasses.replace(settings, system_prompt="\n".join(system))
    session = ChatSession(chat.model, chat.processor, settings)
    digests = [digest for _, _, images in turns for _, digest in images]
    for role, text, read_images in turns[:-1]:
        images = [image for image, _ in read_images]
        session.add_images(images, answered=True)  # bands / wavelengths checked: ValueError -> 400
        # Images as image parts, text as text (the processor never reads user text as structure);
        # several dated images named with their dates, as the session names a question's.
        parts = dated_image_parts([image.datetime for image in images])
        session.messages.append({"role": role, "content": parts + [{"type": "text", "text": text}]})
    # The image processor runs once per image: add_images keeps the tensors every turn reuses.
    session.add_images([image for image, _ in turns[-1][2]])
    return session, turns[-1][1], digests
