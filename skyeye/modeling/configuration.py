"""`SkyEyeConfig`: a vision sub-config, a text (LLM) sub-config and the glue between them.

Modelled on transformers' `LlavaConfig`: the two sub-configs are ordinary configs and round-trip
through `config.json`; everything a training run needs (learning rates, LoRA ranks, ...) lives in
`finetune/`, never here.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

from skyeye.constants import IMAGE_TOKEN, SEG_TOKEN
from skyeye.modeling.vision.configuration import SkyEyeVisionConfig

PROJECTOR_TYPES = ("linear", "mlp2x_gelu")


class SkyEyeConfig(PretrainedConfig):
    """Configuration of `SkyEyeForConditionalGeneration`.

    Args:
        vision_config: the DOFA / DOFA-CLIP tower (`SkyEyeVisionConfig` or its dict).
        text_config: the causal LM's config (any transformers config or its dict with `model_type`).
        llm_source: where the LLM's weights come from when they are not stored in this model's
            folder: a registered LLM name (see `skyeye.modeling.llm.list_llms`), a local folder or a hub id.
        llm_embedded: True when `model.safetensors` holds the LLM's weights too (a standalone
            folder, e.g. after `finetune.merge`); False when only `llm_source` is referenced.
        projector_type: "linear" or "mlp2x_gelu" (LLaVA-1.5's two-layer MLP).
        vision_feature_layer: which tower layer feeds the LLM (-1 last, -2 penultimate, ...).
        token_pooling: average-pool the patch grid by this factor per side before projecting
            (1 = off); divides the image token count by its square.
        image_token: placeholder written in prompts; the processor expands each into
            `num_image_tokens` copies of `image_token_id`.
        image_token_id: id of `image_token` in the tokenizer. It may lie beyond the LLM's
            embedding rows: image positions are never looked up, their features are scattered in.
        seg_token: the token whose hidden state the mask head decodes into a mask.
        seg_token_id: its id (set when the tokenizer gains the token; None before).
        use_mask_head: build the `[SEG]` mask head.
        mask_head_hidden_size: width of the mask decoder.
        mask_head_layers: number of two-way attention layers in the mask decoder.
        mask_decoder: registered mask decoder name (`skyeye.modeling.mask_decoders.MASK_DECODERS`):
            "light" (masks on the patch grid x4) or "hires" (refined on the image's pixels; the
            processor then also makes `pixel_values_hires`, see `SkyEyeImageProcessor.hires_size`).
        mask_hires_dim: width of the "hires" decoder's full-resolution features.
        mask_hires_ratios: number of band-ratio features (normalised differences of
            wavelength-picked band mixes, like NDWI) in the "hires" decoder; 0 = none.
        mask_hires_indices: give the "hires" decoder NDWI, MNDWI, NDVI, NDBI, their soft signs
            and the visible brightness, bands picked by role
            (`skyeye.modeling.mask_decoders.spectral_indices`).
        mask_change: build the change decoder (`change_head`, "change" in
            `skyeye.modeling.mask_decoders.CHANGE_DECODERS`): a `[SEG]` whose `seg_image_index`
            entry is a pair (before, after) is decoded by it into a change mask between the two
            dates (Siamese tokens and their difference, refined on the dates' pixel difference).
            Default False: no change head, and `config.json` is written without this key, so
            folders saved before it existed load, mask and save as before.
        scene_head: build the scene head (`skyeye.modeling.scene_head.SceneHead`), which scores
            names ("forest", "parking lot") against the whole image; the chat answers scene
            multiple-choice questions with it. Default False, and `config.json` is then written
            without the ``scene_*`` keys.
        scene_head_dim: width of the scene head's shared image-name space.
        scene_names: the scene names the head was trained on (the scene stage writes them): the
            names a "mainly X?" about a name the mask decoder does not outline is ranked among.
        scene_top_k: "mainly X?" is answered yes when X ranks within this many of
            ``scene_names`` + X (the scene stage picks it on its kept-out images).
        mask_classes: the classes the mask decoder was trained to outline (the mask stage writes
            the bare ``<p>class</p> [SEG]`` phrases of its training records); the chat counts and
            measures only these. None: skyeye-tiny's list
            (`skyeye.chat.counting.DEFAULT_MASK_CLASSES`), and `config.json` is written without
            this key.
        text_base_vocab_size: vocabulary size of the referenced LLM before SkyEye added tokens to
            it (`[SEG]`, `<p>`, `</p>`); the added rows are stored in `model.safetensors`. None
            when the vocabulary is the LLM's own.
    """

    model_type = "skyeye"
    sub_configs = {"vision_config": SkyEyeVisionConfig, "text_config": AutoConfig}

    def __init__(
        self,
        vision_config: SkyEyeVisionConfig | dict[str, Any] | None = None,
        text_config: PretrainedConfig | dict[str, Any] | None = None,
        llm_source: str | None = None,
        llm_embedded: bool = False,
        projector_type: str = "mlp2x_gelu",
        vision_feature_layer: int = -1,
        token_pooling: int = 1,
        image_token: str = IMAGE_TOKEN,
        image_token_id: int | None = None,
        seg_token: str = SEG_TOKEN,
        seg_token_id: int | None = None,
        use_mask_head: bool = False,
        mask_head_hidden_size: int = 256,
        mask_head_layers: int = 2,
        mask_decoder: str = "light",
        mask_hires_dim: int = 8,
        mask_hires_ratios: int = 0,
        mask_hires_indices: bool = False,
        mask_change: bool = False,
        scene_head: bool = False,
        scene_head_dim: int = 128,
        scene_names: list[str] | None = None,
        scene_top_k: int = 1,
        mask_classes: list[str] | None = None,
        text_base_vocab_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(vision_config, dict):
            vision_config = SkyEyeVisionConfig(**vision_config)
        self.vision_config = vision_config if vision_config is not None else SkyEyeVisionConfig()
        if isinstance(text_config, dict):
            text_config = dict(text_config)
            model_type = text_config.pop("model_type", None)
            if model_type is None:
                raise ValueError("text_config needs a 'model_type' (e.g. 'llama') to be rebuilt")
            text_config = AutoConfig.for_model(model_type, **text_config)
        self.text_config = text_config
        if projector_type not in PROJECTOR_TYPES:
            raise ValueError(
                f"projector_type {projector_type!r} is unknown; choose one of {PROJECTOR_TYPES}"
            )
        if token_pooling < 1:
            raise ValueError(f"token_pooling must be >= 1, got {token_pooling}")
        self.llm_source = llm_source
        self.llm_embedded = llm_embedded
        self.projector_type = projector_type
        self.vision_feature_layer = vision_feature_layer
        self.token_pooling = token_pooling
        self.image_token = image_token
        self.image_token_id = image_token_id
        self.seg_token = seg_token
        self.seg_token_id = seg_token_id
        self.use_mask_head = use_mask_head
        self.mask_head_hidden_size = mask_head_hidden_size
        self.mask_head_layers = mask_head_layers
        self.mask_decoder = mask_decoder
        self.mask_hires_dim = mask_hires_dim
        self.mask_hires_ratios = mask_hires_ratios
        self.mask_hires_indices = mask_hires_indices
        self.mask_change = bool(mask_change)
        self.scene_head = bool(scene_head)
        self.scene_head_dim = int(scene_head_dim)
        self.scene_names = None if scene_names is None else [str(n) for n in scene_names]
        self.scene_top_k = int(scene_top_k)
        self.mask_classes = None if mask_classes is None else [str(c) for c in mask_classes]
        self.text_base_vocab_size = text_base_vocab_size
        # PretrainedConfig.__init__ pushes its own (unset) attention implementation down to the
        # sub-configs; keep the one the loaded LLM was built with (e.g. "sdpa").
        text_attn = getattr(self.text_config, "_attn_implementation", None)
        super().__init__(**kwargs)
        if self.text_config is not None and "attn_implementation" not in kwargs:
            self.text_config._attn_implementation = text_attn

    def to_dict(self) -> dict[str, Any]:
        """The config as saved; the LLM sub-config's ``_name_or_path`` (the folder the LLM was
        loaded from on this machine, e.g. a cache path) is replaced by ``llm_source``, so a
        shipped config names where the LLM comes from, not a machine path. ``mask_change``,
        ``scene_head`` (with its width) and ``mask_classes`` are written only when set."""
        out = super().to_dict()
        if not out.get("mask_change", False):
            out.pop("mask_change", None)  # folders without a change head keep their old bytes
        if not out.get("scene_head", False):
            for key in ("scene_head", "scene_head_dim", "scene_names", "scene_top_k"):
                out.pop(key, None)
        if out.get("mask_classes") is None:
            out.pop("mask_classes", None)  # likewise folders saved before the field existed
        text = out.get("text_config")
        if isinstance(text, dict) and text.get("_name_or_path"):
            text["_name_or_path"] = self.llm_source or ""
        return out

    @property
    def image_grid(self) -> tuple[int, int]:
        """(rows, cols) of the image-token grid after pooling."""
        side = self.vision_config.grid_size
        if side % self.token_pooling:
            raise ValueError(
                f"token_pooling={self.token_pooling} does not divide the {side}x{side} patch grid"
            )
        side //= self.token_pooling
        return side, side

    @property
    def num_image_tokens(self) -> int:
        """Tokens each image occupies in the LLM's sequence."""
        rows, cols = self.image_grid
        return rows * cols
