"""SkyEye's classes in transformers' Auto classes, registered when `skyeye` is imported.

After `import skyeye`, `AutoConfig`, `AutoModelForImageTextToText` (and `AutoModelForVision2Seq`
where the installed transformers still has it), `AutoModel` (the backbone, `SkyEyeModel`, as
`AutoModel` gives `LlavaModel`), `AutoProcessor` and `AutoImageProcessor` resolve a SkyEye folder
to SkyEye's own classes: the code is this package's, never a folder's
(`trust_remote_code` plays no part).
"""

from __future__ import annotations

import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from skyeye.modeling.backbone import SkyEyeModel
from skyeye.modeling.configuration import SkyEyeConfig
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.modeling.vision.configuration import SkyEyeVisionConfig
from skyeye.processing.image_processor import SkyEyeImageProcessor
from skyeye.processing.processor import SkyEyeProcessor


def register_auto_classes() -> None:
    """Register SkyEye with the Auto classes (idempotent)."""
    AutoConfig.register(SkyEyeConfig.model_type, SkyEyeConfig, exist_ok=True)
    AutoConfig.register(SkyEyeVisionConfig.model_type, SkyEyeVisionConfig, exist_ok=True)
    AutoModel.register(SkyEyeConfig, SkyEyeModel, exist_ok=True)
    AutoModelForImageTextToText.register(
        SkyEyeConfig, SkyEyeForConditionalGeneration, exist_ok=True
    )
    vision2seq = getattr(transformers, "AutoModelForVision2Seq", None)  # removed in transformers 5
    if vision2seq is not None:
        vision2seq.register(SkyEyeConfig, SkyEyeForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(SkyEyeConfig, SkyEyeProcessor, exist_ok=True)
    # SkyEye's image processor is one class for every backend transformers may ask for.
    AutoImageProcessor.register(
        SkyEyeConfig,
        slow_image_processor_class=SkyEyeImageProcessor,
        fast_image_processor_class=SkyEyeImageProcessor,
        exist_ok=True,
    )


register_auto_classes()
