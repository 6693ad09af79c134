"""The registry of ``[SEG]`` mask decoders and what a decoder is (`MaskDecoder`).

"light" (`skyeye.modeling.mask_decoders.light.SkyEyeMaskHead`, LISA / SAM-style light decoder on
the tower's patch grid) and "hires" (`skyeye.modeling.mask_decoders.hires.HiResMaskHead`, the
light mask refined on the image's pixels). A config's ``mask_decoder`` names one; the model
builds it as ``get_mask_decoder(name)(config)`` under the attribute ``mask_head`` (so state-dict
keys are ``mask_head.*`` whichever decoder it is).

Any decoder with the :class:`MaskDecoder` forward signature can be registered in
``MASK_DECODERS`` (e.g. a SAM-style decoder from transformers when its weights exist). A decoder
with ``needs_pixels = True`` (``"hires"``) also takes each mask's full-resolution ``pixels`` and
``wavelengths`` and returns masks on their grid.

Change decoders (``CHANGE_DECODERS``; "change", `skyeye.modeling.mask_decoders.change.
ChangeMaskHead`) decode a change ``[SEG]`` over two dates (`ChangeDecoder`); the model builds
``get_change_decoder("change")(config)`` as ``change_head`` when ``config.mask_change`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from skyeye.modeling.mask_decoders.change import ChangeMaskHead
from skyeye.modeling.mask_decoders.hires import HiResMaskHead
from skyeye.modeling.mask_decoders.light import SkyEyeMaskHead

__all__ = [
    "CHANGE_DECODERS",
    "MASK_DECODERS",
    "ChangeDecoder",
    "MaskDecoder",
    "get_change_decoder",
    "get_mask_decoder",
    "list_mask_decoders",
]


@runtime_checkable
class MaskDecoder(Protocol):
    """What the model needs from a mask decoder (an ``nn.Module`` built from the SkyEyeConfig).

    ``forward(seg_hidden (K, D_text), vision_features (K, N, D_vis), grid (h, w) with
    h * w == N, output_size (H, W)) -> (K, H, W)`` mask logits, one mask per ``[SEG]``.
    """

    def __call__(
        self,
        seg_hidden: Tensor,
        vision_features: Tensor,
        grid: tuple[int, int],
        output_size: tuple[int, int],
    ) -> Tensor: ...


@runtime_checkable
class ChangeDecoder(Protocol):
    """What the model needs from a change decoder (an ``nn.Module`` built from the SkyEyeConfig).

    ``forward(seg_hidden (K, D_text), vision_before (K, N, D_vis), vision_after (K, N, D_vis),
    grid (h, w), output_size (H, W) | None, pixels_before, pixels_after, wavelengths_before,
    wavelengths_after) -> (K, H, W)`` change logits, one mask per change ``[SEG]``; pixels are
    per pair (C, H, W) on one grid for both dates, wavelengths (C,) in µm.
    """

    def __call__(
        self,
        seg_hidden: Tensor,
        vision_before: Tensor,
        vision_after: Tensor,
        grid: tuple[int, int],
        output_size: tuple[int, int] | None,
        pixels_before: Sequence[Tensor],
        pixels_after: Sequence[Tensor],
        wavelengths_before: Sequence[Tensor],
        wavelengths_after: Sequence[Tensor],
    ) -> Tensor: ...


MASK_DECODERS: dict[str, type[nn.Module]] = {"light": SkyEyeMaskHead, "hires": HiResMaskHead}
CHANGE_DECODERS: dict[str, type[nn.Module]] = {"change": ChangeMaskHead}


def get_mask_decoder(name: str) -> type[nn.Module]:
    """The mask decoder class registered as ``name`` (build it with ``cls(config)``)."""
    try:
        return MASK_DECODERS[name]
    except KeyError:
        raise KeyError(
            f"unknown mask decoder {name!r}; available: {list_mask_decoders()}"
        ) from None


def list_mask_decoders() -> list[str]:
    return sorted(MASK_DECODERS)


def get_change_decoder(name: str = "change") -> type[nn.Module]:
    """The change decoder class registered as ``name`` (build it with ``cls(config)``)."""
    try:
        return CHANGE_DECODERS[name]
    except KeyError:
        raise KeyError(
            f"unknown change decoder {name!r}; available: {sorted(CHANGE_DECODERS)}"
        ) from None
