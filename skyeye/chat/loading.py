"""Loading helpers of the chat that need no session: image checks before a model loads, and the
weights dtype a ``--dtype`` choice means on a device."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from skyeye.chat.decoding import GenerationSettings
from skyeye.constants import torch_dtype
from skyeye.io.raster import RasterImage, read_raster
from skyeye.processing.image_processor import SkyEyeImageProcessor


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
            raise ValueError(
                message if str(source) in message else f"{source}: {message}"
            ) from None
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
