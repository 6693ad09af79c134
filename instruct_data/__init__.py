"""SkyEye instruction data: one conversation format, converters, validation, mixing, generation."""

from instruct_data.schema import (
    SCHEMA_VERSION,
    Box,
    Conversation,
    ImageRef,
    Mask,
    Turn,
    load_jsonl,
    validate_record,
    write_jsonl,
)

__all__ = [
    "SCHEMA_VERSION",
    "Box",
    "Conversation",
    "ImageRef",
    "Mask",
    "Turn",
    "load_jsonl",
    "validate_record",
    "write_jsonl",
]
