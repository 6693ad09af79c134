"""Change `[SEG]`s: a `[SEG]` whose `seg_image_index` entry is a pair (before, after) of images.

The model's one rule for which image a `[SEG]` segments is `seg_image_index` (default: the last
image before it). An entry that is a pair of global image indices makes the `[SEG]` a change
`[SEG]`: `decode_with_pairs` sends it, with both dates' patch tokens and full-resolution pixels,
to the change decoder (`model.change_head`, built when `config.mask_change` is set), and every
other `[SEG]` of the same input to the mask decoder as before. Who writes the pairs: the change
training stage (`finetune.change_stage`, from change records) and the chat
(`skyeye.chat.change_seg`, a change phrase in a multi-date answer): one rule, so the decoder is
trained on the `[SEG]`s it is asked to decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import torch

from skyeye.modeling.backbone import ImageList, as_image_list, as_wavelength_list

if TYPE_CHECKING:
    from skyeye.modeling.model import SkyEyeForConditionalGeneration

__all__ = ["SegImage", "decode_with_pairs", "is_pair"]

#: What a `[SEG]` segments: an image (global index) or a (before, after) pair (a change mask).
SegImage: TypeAlias = int | tuple[int, int]


def is_pair(entry: Any) -> bool:
    """True for a `seg_image_index` entry naming two images (a change `[SEG]`)."""
    return isinstance(entry, (tuple, list))


def decode_with_pairs(
    model: SkyEyeForConditionalGeneration,
    seg_hidden: torch.Tensor,
    entries: Sequence[Any],
    vision: torch.Tensor,
    output_size: tuple[int, int] | None,
    pixels: ImageList | None,
    wavelengths: ImageList | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of `[SEG]` states (K, D_text) whose entries mix images and (before, after) pairs.

    vision: (n_images, N, D_vis) the tower's patch tokens; pixels / wavelengths: per image, the
    full-resolution pixels (C, H, W) and (C,) µm (the processor's `pixel_values_hires`).
    Returns logits (K, H, W) float32 (a change mask on its after image's grid; `output_size`
    None = the largest grid of the masks' images) and, per mask, its image (the after image).

    Raises ValueError without a change decoder, without full-resolution pixels, or for a pair
    whose dates are on different grids (align them first).
    """
    k = seg_hidden.shape[0]
    if len(entries) != k:
        raise ValueError(f"{k} [SEG] token(s) but {len(entries)} seg_image_index entries")
    head = model.change_head
    if head is None:
        raise ValueError(
            "a [SEG] names a pair of images (a change mask) but this model has no change decoder "
            "(config.mask_change is False); train one with python -m finetune.change_stage"
        )
    images = as_image_list(pixels) if pixels is not None else []
    if not images or wavelengths is None:
        raise ValueError(
            "the change decoder needs pixel_values_hires; build inputs with a processor whose "
            "image_processor.hires_size is set"
        )
    waves = as_wavelength_list(wavelengths, len(images))
    pairs = [(int(e[0]), int(e[1])) if is_pair(e) else None for e in entries]
    after = [p[1] if p is not None else int(e) for p, e in zip(pairs, entries, strict=True)]
    for p in pairs:
        if p is not None and not (0 <= p[0] < len(images) and 0 <= p[1] < len(images)):
            raise ValueError(f"change [SEG] pair {p} names an image the input does not have")
    if output_size is None:
        grids = [(int(images[i].shape[-2]), int(images[i].shape[-1])) for i in after]
        output_size = max(grids, key=lambda g: g[0] * g[1])
    size = (int(output_size[0]), int(output_size[1]))
    device = vision.device
    index = torch.as_tensor(after, device=device)
    out = seg_hidden.new_zeros((k, *size), dtype=torch.float32)
    single = [j for j, p in enumerate(pairs) if p is None]
    if single:
        if model.mask_head is None:
            raise ValueError("this model has no mask head (config.use_mask_head is False)")
        logits, _ = model.decode_on_images(
            seg_hidden[single], index[single], vision, size, pixels, wavelengths
        )
        out[single] = logits.float()
    change = [j for j, p in enumerate(pairs) if p is not None]
    side = model.config.vision_config.grid_size
    before_i = [pairs[j][0] for j in change]  # type: ignore[index]
    after_i = [pairs[j][1] for j in change]  # type: ignore[index]
    out[change] = head(
        seg_hidden[change],
        vision[torch.as_tensor(before_i, device=device)],
        vision[torch.as_tensor(after_i, device=device)],
        (side, side),
        size,
        [images[i] for i in before_i],
        [images[i] for i in after_i],
        [waves[i] for i in before_i],
        [waves[i] for i in after_i],
    )
    return out, index
