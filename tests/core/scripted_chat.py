"""A scripted chat for the measured-answer tests: its masks are drawn by the test, so every
count, box and verdict is known (what `skyeye.chat.grounded` uses of a `ChatSession`)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from affine import Affine
from rasterio.crs import CRS

from skyeye.chat.decoding import GenerationSettings
from skyeye.chat.session import ChatReply
from skyeye.grounding.geo import mask_area
from skyeye.io.image import RasterImage


def five_blobs() -> np.ndarray:
    """3 separated squares and 2 touching discs: 5 compact objects (aircraft), 4 regions (water:
    the touching discs are one water body)."""
    mask = np.zeros((64, 64), bool)
    mask[2:8, 2:8] = mask[2:8, 20:26] = mask[50:60, 2:12] = True
    yy, xx = np.mgrid[:64, :64]
    mask |= (yy - 40) ** 2 + (xx - 35) ** 2 <= 36
    mask |= (yy - 40) ** 2 + (xx - 47) ** 2 <= 36
    return mask


class ScriptedSession:
    """What `skyeye.chat.grounded` uses of a `ChatSession`; `_reply` decodes the scripted
    masks for a forced ``<p>X</p> [SEG]`` answer (and counts how often it was asked)."""

    def __init__(self, masks: dict[str, np.ndarray], image: RasterImage, mask_head=True):
        self.masks, self.images, self.forced = masks, [image], []
        self.settings = GenerationSettings()
        self.model = SimpleNamespace(
            mask_head=object() if mask_head else None,
            config=SimpleNamespace(mask_classes=None),  # a config saved before the field
        )
        self.processor = ScriptedProcessor(self)
        self.questions: list[str] = []  # the text of each one-image question the chat built

    def _image_tensors(self, image):
        return {"pixel_values": torch.zeros(1)}

    def _reply(self, text, inputs, new_ids, states, images=None):
        from skyeye.grounding.parse import parse_seg_phrases

        self.forced.append(text)
        reply = ChatReply(text=text)
        for phrase in parse_seg_phrases(text):
            add_mask(reply, self.masks[phrase], phrase, (images or self.images)[0])
        return reply


class ScriptedProcessor:
    """The processor calls the chat makes: the tokenizer, and prompts built for one image."""

    def __init__(self, session: ScriptedSession):
        self.session = session

    def tokenizer(self, text, **_):
        return {"input_ids": [1, 2, 3]}

    def __call__(self, conversation, images, **_):
        self.session.questions.append(conversation[-1]["content"][-1]["text"])
        return dict(INPUTS)


def add_mask(reply: ChatReply, mask: np.ndarray, phrase: str, image: RasterImage) -> None:
    reply.masks.append(mask)
    reply.mask_phrases.append(phrase)
    reply.mask_images.append(0)
    reply.mask_areas.append(mask_area(mask, transform=image.transform, crs=image.crs))


def image(georeferenced: bool = True, pixel_m: float = 20.0) -> RasterImage:
    return RasterImage(
        data=np.zeros((3, 64, 64), np.float32),
        band_names=["R", "G", "B"],
        wavelengths=[0.665, 0.56, 0.49],
        crs=CRS.from_epsg(32633) if georeferenced else None,
        transform=Affine(pixel_m, 0, 400000, 0, -pixel_m, 5000000) if georeferenced else None,
    )


INPUTS = {"input_ids": torch.zeros((1, 4), dtype=torch.long)}
