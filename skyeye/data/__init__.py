"""Training data: instruction records (JSONL) -> model examples and padded batches; a record's
image read once for training, the vision stage and evaluation (`record_image`).

May import io, processing, grounding and the layer-0 modules; never the chat or evaluation.
"""
