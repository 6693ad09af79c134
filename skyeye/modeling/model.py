"""`SkyEyeForConditionalGeneration`: the SkyEye backbone + mask decoder, losses and generation.

Split as transformers' Llava: `SkyEyeModel` (`skyeye.modeling.backbone`: vision tower, projector,
causal LM; `get_image_features` and the merge of image features into the text embeddings) is
`self.model`; this class adds the `[SEG]` mask decoder (`mask_head`), the weighted training
losses (token CE, mask BCE and dice), mask decoding and `generate`. It is a transformers
`PreTrainedModel` (see `skyeye.modeling.pretrained` for loading, saving and the switches
transformers reads); `AutoModelForImageTextToText` resolves SkyEye folders once `skyeye` is
imported.

Unlike Llava, the backbone's parts are also registered here, at the top level, so every
parameter name and state-dict key stays what it was before the split (`vision_tower.*`,
`projector.*`, `language_model.*`, `mask_head.*`): saved folders, training checkpoints
(`finetune.state`), `device_map` keys and PEFT adapters read the same. `self.model` shares those
modules (it is not a second registered child, which would name every weight twice).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from skyeye.modeling.backbone import (
    ImageList,
    SkyEyeModel,
    SkyEyeModelOutput,
    as_image_list,
    as_wavelength_list,
)
from skyeye.modeling.change_masks import SegImage, decode_with_pairs
from skyeye.modeling.configuration import SkyEyeConfig
from skyeye.modeling.mask_decoders import get_change_decoder, get_mask_decoder, mask_losses
from skyeye.modeling.pretrained import SkyEyePreTrainedModel
from skyeye.modeling.scene_head import SceneHead

logger = logging.getLogger(__name__)

__all__ = ["SkyEyeForConditionalGeneration", "SkyEyeModel", "SkyEyeModelOutput", "SkyEyeOutput"]

#: the backbone's parts, registered on the backbone and, under the same names, here
_BACKBONE_PARTS = ("vision_tower", "projector", "language_model")


@dataclass
class SkyEyeOutput(ModelOutput):
    """Outputs of `SkyEyeForConditionalGeneration.forward`.

    loss: total training loss (token CE, plus weighted mask losses when masks are given).
    logits: (B, L, V) next-token logits.
    hidden_states: the LLM's hidden states when requested.
    image_features: (n_images, T, D_text) projected image tokens.
    mask_logits: (K, H, W) one mask per `[SEG]` in reading order, when the mask head ran.
    loss_terms: the unweighted losses ("ce", and "bce"/"dice" with masks).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    image_features: torch.Tensor | None = None
    mask_logits: torch.Tensor | None = None
    loss_terms: dict[str, torch.Tensor] | None = None


def _stack_masks(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """(K, H, W) from a list of (H, W) masks; an empty list gives a (0, 1, 1) tensor."""
    return torch.stack(list(masks)) if len(masks) else torch.zeros(0, 1, 1)


class SkyEyeForConditionalGeneration(SkyEyePreTrainedModel):
    """A multimodal remote-sensing chat model: `SkyEyeModel` + `[SEG]` mask decoder.

    Args:
        config: the composite config.
        language_model: an already loaded (or built) causal LM, kept as it is; built from
            `config.text_config` with random weights if None.

    `vision_tower`, `projector` and `language_model` are the backbone's own modules; assigning
    one here (a PEFT-wrapped LLM, a merged one) assigns it in the backbone too.
    """

    #: the backbone, sharing its modules with this model (see the module docstring)
    model: SkyEyeModel
    vision_tower: nn.Module
    projector: nn.Module

    def __init__(self, config: SkyEyeConfig, language_model: PreTrainedModel | None = None) -> None:
        super().__init__(config)
        backbone = SkyEyeModel(config, language_model)
        # Not a child module: its parts are registered below under their own names.
        object.__setattr__(self, "model", backbone)
        for name in _BACKBONE_PARTS:
            nn.Module.__setattr__(self, name, getattr(backbone, name))
        self.mask_head: nn.Module | None = None
        if config.use_mask_head:
            self.mask_head = get_mask_decoder(config.mask_decoder)(config)
        # Built after the mask head, so models without it draw the same weights as before.
        self.change_head: nn.Module | None = None
        if config.mask_change:
            self.change_head = get_change_decoder("change")(config)
        self.scene_head: SceneHead | None = SceneHead(config) if config.scene_head else None
        self.post_init()

    def __setattr__(self, name: str, value: Any) -> None:
        # One module, two owners: a swapped part must be the backbone's as well, or the backbone
        # would go on running the old one.
        if name in _BACKBONE_PARTS and "model" in self.__dict__:
            setattr(self.model, name, value)
        super().__setattr__(name, value)

    def train(self, mode: bool = True) -> SkyEyeForConditionalGeneration:
        # The backbone is no child, so its own flag is set here (its parts are children).
        self.model.training = mode
        return super().train(mode)

    # ------------------------------------------------------------- helpers
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def get_image_features(self, pixel_values: ImageList, wavelengths: ImageList) -> torch.Tensor:
        """(n_images, T, D_text) image tokens in the LLM's width (`SkyEyeModel.get_image_features`)."""
        return self.model.get_image_features(pixel_values, wavelengths)

    def encode_images(
        self, pixel_values: ImageList, wavelengths: ImageList
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vision features (n_images, N, D_vision) and image features (n_images, T, D_text)."""
        return self.model.encode_images(pixel_values, wavelengths)

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        pixel_values: ImageList | None = None,
        wavelengths: ImageList | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """inputs_embeds (B, L, D_text) with the images merged, vision features (n_images, N,
        D_vision) and image features (n_images, T, D_text) (`SkyEyeModel.embed_inputs`)."""
        return self.model.embed_inputs(input_ids, pixel_values, wavelengths)

    # ------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: ImageList | None = None,
        wavelengths: ImageList | None = None,
        labels: torch.Tensor | None = None,
        masks: torch.Tensor | Sequence[torch.Tensor] | None = None,
        seg_image_index: Sequence[SegImage] | None = None,
        pixel_values_hires: ImageList | None = None,
        output_hidden_states: bool = False,
        ce_weight: float = 1.0,
        bce_weight: float = 2.0,
        dice_weight: float = 0.5,
        **kwargs: Any,
    ) -> SkyEyeOutput:
        """Run the model; with `labels` (and `masks`) also the training loss.

        Args:
            input_ids: (B, L) with image positions expanded by the processor.
            attention_mask: (B, L).
            pixel_values / wavelengths: per image, in the order the images appear.
            labels: (B, L), -100 where not supervised.
            masks: one target (H, W) per `[SEG]` in `input_ids`, in reading order, all of one size
                (or a (K, H, W) tensor). The mask head then decodes every `[SEG]`; an empty list
                with no `[SEG]` adds no mask loss.
            seg_image_index: the image each `[SEG]` lies on (global image index); default: the last
                image before that `[SEG]` in its sample. A pair (before, after) of global image
                indices makes that `[SEG]` a change `[SEG]`, decoded by `change_head` (needs
                `config.mask_change`) into a change mask on the after image's grid.
            pixel_values_hires: per image, the full-resolution pixels a "hires" mask decoder
                refines on (the processor's `pixel_values_hires`); masks then share their grid.
            ce_weight / bce_weight / dice_weight: loss weights (DESIGN.md defaults 1.0 / 2.0 / 0.5).
        """
        want_masks = masks is not None and self.mask_head is not None
        # The token CE is the LLM's own (labels pass through): its shift, ignore index and
        # float32 upcast stay those of transformers.
        out = self.model(
            input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            wavelengths=wavelengths,
            labels=labels,
            output_hidden_states=output_hidden_states or want_masks,
            **kwargs,
        )
        loss, terms, mask_logits = out.loss, {}, None
        if out.loss is not None:
            terms["ce"] = out.loss.detach()
            loss = ce_weight * out.loss
        if want_masks and masks is not None:
            assert out.hidden_states is not None  # requested above
            targets = masks if isinstance(masks, torch.Tensor) else _stack_masks(masks)
            size = (int(targets.shape[-2]), int(targets.shape[-1])) if targets.ndim == 3 else (1, 1)
            mask_logits, _ = self.decode_masks(
                out.hidden_states[-1],
                input_ids,
                out.vision_features,
                size,
                seg_image_index,
                pixels=pixel_values_hires,
                wavelengths=wavelengths,
            )
            if targets.shape[0] != mask_logits.shape[0]:
                raise ValueError(
                    f"{mask_logits.shape[0]} [SEG] token(s) but {targets.shape[0]} target mask(s); "
                    "give one mask per [SEG]"
                )
            if len(targets):  # a sample that segments nothing ([] and no [SEG]) has no mask loss
                mask_terms = mask_losses(mask_logits, targets.to(mask_logits.device))
                terms.update({k: v.detach() for k, v in mask_terms.items()})
                extra = bce_weight * mask_terms["bce"] + dice_weight * mask_terms["dice"]
                loss = extra if loss is None else loss + extra
        return SkyEyeOutput(
            loss=loss,
            logits=out.logits,
            hidden_states=out.hidden_states if output_hidden_states else None,
            image_features=out.image_features,
            mask_logits=mask_logits,
            loss_terms=terms or None,
        )

    def decode_masks(
        self,
        last_hidden: torch.Tensor,
        input_ids: torch.Tensor,
        vision: torch.Tensor | None,
        output_size: tuple[int, int] | None,
        seg_image_index: Sequence[SegImage] | None = None,
        *,
        pixels: ImageList | None = None,
        wavelengths: ImageList | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode each `[SEG]` in `input_ids` (B, L) into mask logits (K, H, W).

        Returns the logits and, per mask, the global index of the image it lies on (a change
        mask: the after image of its pair).

        `last_hidden` (B, L, D_text) is the LLM's last hidden state; `vision` (n_images, N, D_vis)
        the tower's patch tokens (before pooling), on whose grid the mask is decoded. A decoder
        with `needs_pixels` also gets each mask's image from `pixels` (per image, the
        processor's `pixel_values_hires`) and `wavelengths`; `output_size` None then means the
        grid of the masks' images (the largest when they differ), else the model's input size.
        """
        if self.mask_head is None:
            raise ValueError("this model has no mask head (config.use_mask_head is False)")
        seg_id = self.config.seg_token_id
        if seg_id is None:
            return last_hidden.new_zeros((0, *(output_size or (1, 1)))), torch.zeros(
                0, dtype=torch.long
            )
        positions = (input_ids == seg_id).nonzero(as_tuple=False)  # (K, 2): row, column
        if len(positions) == 0:
            empty = output_size or (1, 1)
            return last_hidden.new_zeros((0, *empty)), torch.zeros(0, dtype=torch.long)
        if vision is None:
            raise ValueError("[SEG] needs an image to segment, but the input has none")
        if seg_image_index is None:
            per_image = self.config.num_image_tokens
            is_image = (input_ids == self.config.image_token_id).long()
            before_row = torch.cumsum(is_image.sum(1), 0) - is_image.sum(1)  # (B,)
            within_row = torch.cumsum(is_image, 1) - is_image  # (B, L)
            rows, cols = positions[:, 0], positions[:, 1]
            if (within_row[rows, cols] < per_image).any():
                raise ValueError(
                    "a [SEG] comes before any image in its sample; put the image first"
                )
            index = (before_row[rows] + within_row[rows, cols]) // per_image - 1
        else:
            entries = list(seg_image_index)
            if any(isinstance(e, (tuple, list)) for e in entries):
                # Change [SEG]s name a pair (before, after): the change decoder takes them.
                seg_hidden = last_hidden[positions[:, 0], positions[:, 1]]
                return decode_with_pairs(
                    self, seg_hidden, entries, vision, output_size, pixels, wavelengths
                )
            index = torch.as_tensor(entries, device=vision.device)
        seg_hidden = last_hidden[positions[:, 0], positions[:, 1]]
        return self.decode_on_images(seg_hidden, index, vision, output_size, pixels, wavelengths)

    def decode_on_images(
        self,
        seg_hidden: torch.Tensor,
        index: torch.Tensor,
        vision: torch.Tensor,
        output_size: tuple[int, int] | None,
        pixels: ImageList | None = None,
        wavelengths: ImageList | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask decoder on `[SEG]` states (K, D_text), each on image `index[k]` of `vision`
        (n_images, N, D_vis): logits (K, H, W) and `index` (as `decode_masks`)."""
        assert self.mask_head is not None
        side = self.config.vision_config.grid_size
        grid = (side, side)
        if not getattr(self.mask_head, "needs_pixels", False):
            if output_size is None:
                output_size = (self.config.vision_config.image_size,) * 2
            return self.mask_head(seg_hidden, vision[index], grid, output_size), index
        images = as_image_list(pixels) if pixels is not None else []
        if not images or wavelengths is None:
            raise ValueError(
                f"the {self.config.mask_decoder!r} mask decoder needs pixel_values_hires; build "
                "inputs with a processor whose image_processor.hires_size is set"
            )
        waves = as_wavelength_list(wavelengths, len(images))
        rows = index.tolist()
        if output_size is None:
            grids = [tuple(images[i].shape[-2:]) for i in rows]
            output_size = max(grids, key=lambda g: g[0] * g[1])
        logits = self.mask_head(
            seg_hidden,
            vision[index],
            grid,
            output_size,
            pixels=[images[i] for i in rows],
            wavelengths=[waves[i] for i in rows],
        )
        return logits, index

    @torch.no_grad()
    def predict_masks(
        self,
        inputs: dict[str, Any],
        new_ids: torch.Tensor,
        seg_image_index: Sequence[SegImage] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks for the `[SEG]` tokens of a generated answer (never those of the prompt).

        Args:
            inputs: the prompt as built by the processor (input_ids (1, L), pixel_values, ...).
            new_ids: (1, T) the generated tokens.
            seg_image_index: per answer `[SEG]`, its image or (before, after) pair (a change
                mask), as in `forward`; default: the last image before it.

        Returns:
            mask logits (K, H, W) and the image index of each: at the model's input size (S, S),
            or, for a decoder that refines on pixels, on the `pixel_values_hires` grid of the
            masks' image (the largest one when masks lie on images of different grids).
        """
        ids = torch.cat([inputs["input_ids"], new_ids.to(inputs["input_ids"].device)], dim=1)
        # Only the hidden states are needed: logits for one position, not (B, L, vocab) (the
        # full logits of a batch of 8 windows took ~0.5 GiB in skyeye.scene).
        out = self.model(
            ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=inputs.get("pixel_values"),
            wavelengths=inputs.get("wavelengths"),
            output_hidden_states=True,
            logits_to_keep=1,
        )
        assert out.hidden_states is not None  # requested above
        hires = inputs.get("pixel_values_hires")
        # Only the answer's [SEG]s make masks: those of the prompt and the history belong to other
        # turns (or are text a user typed), so they are hidden from the decoder.
        answer_only = ids.clone()
        prompt = answer_only[:, : inputs["input_ids"].shape[1]]
        prompt[prompt == self.config.seg_token_id] = -1
        return self.decode_masks(
            out.hidden_states[-1],
            answer_only,
            out.vision_features,
            None,
            seg_image_index,
            pixels=hires,
            wavelengths=inputs.get("wavelengths"),
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: ImageList | None = None,
        wavelengths: ImageList | None = None,
        pixel_values_hires: ImageList | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Generate a continuation; returns only the new tokens (B, T_new).

        Any `transformers` generation argument passes through (`max_new_tokens`, `do_sample`,
        `streamer`, ...). `pixel_values_hires` is accepted so the processor's output can be
        passed whole; only `predict_masks` uses it. A non-empty `cache` (a transformers KV
        cache) of the prompt's first tokens is extended; when every image lies inside it, the
        tower does not run and only the remaining tokens are fed.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # The ids ride along with the embeddings so that logits processors (repetition penalty)
        # see the prompt; image positions get a harmless in-vocabulary id.
        image_positions = self.model.get_placeholder_mask(input_ids)
        safe_ids = input_ids.masked_fill(image_positions, 0)
        cache = generate_kwargs.get("cache")
        cached = cache.get_seq_length() if cache is not None else 0
        if cached and not bool(image_positions[:, cached:].any()):
            # A kept conversation prefix (skyeye.chat.prefix_cache) holding every image: only the
            # text after it is fed, looked up in the embedding table; the tower does not run.
            sequences = self.language_model.generate(
                input_ids=safe_ids, attention_mask=attention_mask, **generate_kwargs
            )
            return sequences[:, input_ids.shape[1] :]
        # Otherwise the images are embedded; a cache of the text before the first image (the
        # scene's windows share one) is extended from the embeddings past it.
        embeds, _, _ = self.embed_inputs(input_ids, pixel_values, wavelengths)
        sequences = self.language_model.generate(
            input_ids=safe_ids,
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            **generate_kwargs,
        )
        return sequences[:, input_ids.shape[1] :]
