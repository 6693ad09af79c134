"""The model: `SkyEyeConfig`, the DOFA vision towers (`vision/`), the projector, the mask
decoders (`mask_decoders/`), the generation hooks that decode masks while `generate` runs
(`generation_hooks`), LLM loading, checkpoints and the builder of new models.

May import `skyeye.io`, `skyeye.processing` (the builder returns a processor with the model) and
the layer-0 modules; never grounding, chat or anything above.
"""
