"""`SkyEyeModel`: the backbone, DOFA vision tower + projector + causal LM, as transformers' `LlavaModel`.

The backbone encodes images (`get_image_features`), merges them into the text embeddings
(`embed_inputs`: image placeholder positions, whose id may lie beyond the LLM's vocabulary, are
filled by `masked_scatter` after checking that the number of placeholders equals the number of
features, exactly as Llava does) and runs the LLM on `inputs_embeds`. The mask decoder, the
weighted losses and generation sit on top, in `SkyEyeForConditionalGeneration`
(`skyeye.modeling.model`).

Unlike `LlavaModel`, the language model keeps its own LM head: it is any transformers causal LM,
the module PEFT wraps and saves, so its weights, `device_map` keys and adapter keys stay the
LLM's own, and so the backbone's output already holds the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.utils import ModelOutput

from skyeye.modeling.configuration import SkyEyeConfig
from skyeye.modeling.pretrained import SkyEyePreTrainedModel
from skyeye.modeling.projector import SkyEyeProjector
from skyeye.modeling.vision import SkyEyeVisionTower

ImageList = Sequence[torch.Tensor] | torch.Tensor

__all__ = ["ImageList", "SkyEyeModel", "SkyEyeModelOutput", "as_image_list", "as_wavelength_list"]


@dataclass
class SkyEyeModelOutput(ModelOutput):
    """Outputs of `SkyEyeModel.forward`.

    loss: the LLM's token cross-entropy when `labels` were given.
    logits: (B, L, V) next-token logits (or fewer positions with `logits_to_keep`).
    past_key_values: the LLM's cache when `use_cache`.
    hidden_states: the LLM's hidden states when requested, each (B, L, D_text).
    vision_features: (n_images, N, D_vision) the tower's patch tokens, before the projector.
    image_features: (n_images, T, D_text) projected image tokens, as merged into the text.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: Any | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    vision_features: torch.Tensor | None = None
    image_features: torch.Tensor | None = None


def as_image_list(pixel_values: ImageList) -> list[torch.Tensor]:
    """Per-image (C_i, H, W) tensors from a list, one (C, H, W) image or a (B, C, H, W) batch."""
    if isinstance(pixel_values, torch.Tensor):
        if pixel_values.ndim == 3:
            return [pixel_values]
        if pixel_values.ndim != 4:
            raise ValueError(
                f"pixel_values must be (B, C, H, W) or a list of (C, H, W); got {tuple(pixel_values.shape)}"
            )
        return list(pixel_values)
    return list(pixel_values)


def as_wavelength_list(wavelengths: ImageList, count: int) -> list[torch.Tensor]:
    """Per-image (C_i,) wavelengths; one (C,) tensor is shared by all `count` images."""
    if isinstance(wavelengths, torch.Tensor):
        if wavelengths.ndim == 1:
            return [wavelengths] * count
        return list(wavelengths)
    return list(wavelengths)


class SkyEyeModel(SkyEyePreTrainedModel):
    """The SkyEye backbone: vision tower, projector and language model, without the mask decoder.

    Args:
        config: the composite config.
        language_model: an already loaded (or built) causal LM, kept as it is; built from
            `config.text_config` with random weights if None.

    `SkyEyeModel.from_pretrained(folder)` reads a full model folder; the mask and change decoders'
    weights (`mask_head.*`, `change_head.*`, `scene_head.*`) belong to the class on top and are
    skipped (every other key is checked).
    """

    #: weights of a model folder that belong to the conditional-generation class on top
    _head_key_prefixes: tuple[str, ...] = ("mask_head.", "change_head.", "scene_head.")

    def __init__(self, config: SkyEyeConfig, language_model: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        # Built in this order under the caller's seed (tower, projector, LLM), as before the split,
        # so `build_model` draws the same weights.
        self.vision_tower = SkyEyeVisionTower(config.vision_config)
        self.projector = SkyEyeProjector(config)
        if language_model is None:
            language_model = AutoModelForCausalLM.from_config(config.text_config)
        self._mark_initialised(language_model)
        self.language_model = language_model
        self.post_init()

    @property
    def device(self) -> torch.device:
        # The projector, not the LLM: a quantised or dispatched LLM may sit elsewhere, and the
        # images are encoded where the tower and projector are.
        return next(self.projector.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.projector.parameters()).dtype

    # ----------------------------------------------------------------- images
    def get_vision_features(self, pixel_values: ImageList, wavelengths: ImageList) -> torch.Tensor:
        """The tower's patch tokens of each image, batched where the bands agree.

        Args:
            pixel_values: list of (C_i, H, W), or a (B, C, H, W) tensor.
            wavelengths: list of (C_i,) in µm, or one (C,) shared by all images.

        Returns:
            (n_images, N, D_vision): N patch tokens of the configured `vision_feature_layer`.
        """
        images = as_image_list(pixel_values)
        waves = as_wavelength_list(wavelengths, len(images))
        if len(waves) != len(images):
            raise ValueError(f"{len(images)} images but {len(waves)} wavelength vectors")
        groups: dict[tuple[float, ...], list[int]] = {}
        for index, (image, wave) in enumerate(zip(images, waves, strict=True)):
            if image.shape[0] != wave.shape[0]:
                raise ValueError(
                    f"image {index} has {image.shape[0]} bands but {wave.shape[0]} wavelengths; "
                    "give one wavelength (µm) per band"
                )
            groups.setdefault(tuple(float(w) for w in wave), []).append(index)
        results: list[torch.Tensor | None] = [None] * len(images)
        for key, indices in groups.items():
            batch = torch.stack([images[i] for i in indices]).to(
                device=self.device, dtype=self.dtype
            )
            wave = torch.tensor(key, device=self.device, dtype=torch.float32)
            features = self.vision_tower(
                batch, wave, feature_layer=self.config.vision_feature_layer
            )
            for row, index in enumerate(indices):
                results[index] = features[row]
        return torch.stack(results)  # type: ignore[arg-type]

    def get_image_features(self, pixel_values: ImageList, wavelengths: ImageList) -> torch.Tensor:
        """Image tokens in the LLM's width: the tower's patch tokens through the projector.

        Args:
            pixel_values: list of (C_i, H, W), or a (B, C, H, W) tensor.
            wavelengths: list of (C_i,) in µm, or one (C,) shared by all images.

        Returns:
            (n_images, T, D_text), T = `config.num_image_tokens` (the patch grid after pooling).
        """
        return self.encode_images(pixel_values, wavelengths)[1]

    def encode_images(
        self, pixel_values: ImageList, wavelengths: ImageList
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vision features (n_images, N, D_vision) and image features (n_images, T, D_text).

        The mask decoder reads the former, the LLM the latter: one tower pass gives both.
        """
        vision = self.get_vision_features(pixel_values, wavelengths)
        return vision, self.projector(vision)

    def get_placeholder_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) True at the image placeholder positions of `input_ids` (B, L)."""
        image_id = self.config.image_token_id
        if image_id is None:
            return torch.zeros_like(input_ids, dtype=torch.bool)
        return input_ids == image_id

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        pixel_values: ImageList | None = None,
        wavelengths: ImageList | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Token embeddings with the image features scattered into the image positions.

        Args:
            input_ids: (B, L) with each image expanded to `num_image_tokens` placeholders.
            pixel_values / wavelengths: per image, in the order the images appear.

        Returns:
            inputs_embeds (B, L, D_text), vision features (n_images, N, D_vision) or None, and
            image features (n_images, T, D_text) or None.
        """
        image_mask = self.get_placeholder_mask(input_ids)
        # Image positions are overwritten below, so their (possibly out-of-vocabulary) id is never
        # looked up in the embedding table.
        safe_ids = input_ids.masked_fill(image_mask, 0)
        embeds = self.language_model.get_input_embeddings()(safe_ids)
        n_positions = int(image_mask.sum())
        if pixel_values is None or len(as_image_list(pixel_values)) == 0:
            if n_positions:
                raise ValueError(f"the input has {n_positions} image tokens but no pixel_values")
            return embeds, None, None
        if wavelengths is None:
            raise ValueError("pixel_values given without wavelengths (µm, one per band)")
        vision, features = self.encode_images(pixel_values, wavelengths)
        n_features = features.shape[0] * features.shape[1]
        if n_features != n_positions:
            raise ValueError(
                f"Image features and image tokens do not match: tokens: {n_positions}, "
                f"features: {n_features} ({features.shape[0]} images x {features.shape[1]}); "
                "build inputs with SkyEyeProcessor so each <image> is expanded"
            )
        mask = image_mask.unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, features.to(embeds.dtype).reshape(-1))
        return embeds, vision, features

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: ImageList | None = None,
        wavelengths: ImageList | None = None,
        **kwargs: Any,
    ) -> SkyEyeModelOutput:
        """Merge the images into the prompt and run the LLM on the embeddings.

        Args:
            input_ids: (B, L) with image positions expanded by the processor.
            attention_mask: (B, L).
            pixel_values / wavelengths: per image, in the order the images appear.
            **kwargs: passed to the LLM (`labels` (B, L), `output_hidden_states`,
                `logits_to_keep`, `past_key_values`, `use_cache`, ...).
        """
        embeds, vision, features = self.embed_inputs(input_ids, pixel_values, wavelengths)
        out = self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        return SkyEyeModelOutput(
            loss=out.loss,
            logits=out.logits,
            past_key_values=getattr(out, "past_key_values", None),
            hidden_states=out.hidden_states,
            vision_features=vision,
            image_features=features,
        )
