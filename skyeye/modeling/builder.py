"""Assemble a new (untrained) SkyEye model from a vision config and any causal LM."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import torch
from transformers import AddedToken

from skyeye.constants import GROUNDING_TOKENS
from skyeye.modeling.configuration import SkyEyeConfig
from skyeye.modeling.llm import load_llm
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.modeling.vision import SkyEyeVisionConfig
from skyeye.processing.image_processor import SkyEyeImageProcessor
from skyeye.processing.processor import SkyEyeProcessor

logger = logging.getLogger(__name__)


def build_model(
    *,
    vision_config: SkyEyeVisionConfig,
    llm_source: str,
    image_size: int | None = None,
    cache_dir: str | Path | None = None,
    image_processor_kwargs: dict[str, Any] | None = None,
    **config_kwargs: Any,
) -> tuple[SkyEyeForConditionalGeneration, SkyEyeProcessor]:
    """Build a SkyEye model around `llm_source` with a freshly initialised tower and projector.

    Args:
        vision_config: shape of the vision tower.
        llm_source: embedded LLM name, local folder or hub id (see `skyeye.modeling.llm`).
        image_size: side of the square model input (defaults to the tower's `image_size`).
        cache_dir: where an embedded LLM's converted copy is cached.
        image_processor_kwargs: extra `SkyEyeImageProcessor` settings (value scaling, ...).
        **config_kwargs: `SkyEyeConfig` glue fields (projector_type, token_pooling,
            use_mask_head, ...).

    Returns:
        (model, processor): the tokenizer has gained `<image>` (and, with the mask head,
        `[SEG]`, `<p>`, `</p>`, whose embedding rows are added to the LLM).
    """
    llm, tokenizer = load_llm(llm_source, cache_dir=cache_dir)
    if image_size is not None:
        vision_config.image_size = image_size
    config = SkyEyeConfig(
        vision_config=vision_config,
        text_config=llm.config,
        llm_source=llm_source,
        **config_kwargs,
    )
    if config.use_mask_head:
        base_vocab = int(cast(torch.Tensor, llm.get_input_embeddings().weight).shape[0])
        # Not "special": decoding keeps them in the answer text, where grounding parses them.
        # Not normalised: matched verbatim even by lower-casing tokenizers.
        added = tokenizer.add_tokens(
            [AddedToken(t, normalized=False, special=False) for t in GROUNDING_TOKENS]
        )
        if added:
            # Grow the LLM to the tokenizer (the tokenizer may already be longer than the
            # embedding table, e.g. padded vocabularies), so the new tokens can be generated.
            # Padding the table to a multiple of 64 keeps the output projection's matrix shape
            # friendly to GEMM kernels (an odd vocabulary slowed bf16 decoding measurably).
            llm.resize_token_embeddings(
                max(len(tokenizer), base_vocab), pad_to_multiple_of=64, mean_resizing=True
            )
            config.text_base_vocab_size = base_vocab
            config.text_config = llm.config
        config.seg_token_id = cast(int, tokenizer.convert_tokens_to_ids(config.seg_token))
    image_processor = SkyEyeImageProcessor(
        image_size=config.vision_config.image_size, **(image_processor_kwargs or {})
    )
    processor = SkyEyeProcessor(
        image_processor,
        tokenizer,
        num_image_tokens=config.num_image_tokens,
        image_token=config.image_token,
        max_length=getattr(llm.config, "max_position_embeddings", None),
    )
    config.image_token_id = processor.image_token_id
    model = SkyEyeForConditionalGeneration(config, llm)
    return model, processor
