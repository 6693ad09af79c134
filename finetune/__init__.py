"""Fine-tuning SkyEye: stage 1 projector alignment, stage 2 LoRA / QLoRA instruction tuning.

Entry points: `python -m finetune.train` and `python -m finetune.merge`; recipes in
`finetune/recipes/`, accelerate configs in `finetune/accelerate_configs/` (docs/finetuning.md).
"""
