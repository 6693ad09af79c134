"""Training data: instruction records (JSONL) -> model examples and padded batches.

May import io, processing, grounding and the layer-0 modules; never the chat or evaluation.
"""
