"""Names shared across SkyEye's layers: special tokens, the label ignore index, MCQ letters and
the dtype names the entry points accept. One copy of each; import them from here."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Placeholder users write for an image; the processor expands it into image-token positions.
IMAGE_TOKEN = "<image>"
#: The token whose hidden state the mask decoder turns into a mask.
SEG_TOKEN = "[SEG]"
#: Phrase delimiters of grounded answers (`<p>water</p> [SEG]`).
PHRASE_OPEN = "<p>"
PHRASE_CLOSE = "</p>"
#: Tokens SkyEye adds to an LLM's vocabulary when it has a mask head.
GROUNDING_TOKENS = (SEG_TOKEN, PHRASE_OPEN, PHRASE_CLOSE)
#: Label value the loss ignores (PyTorch's cross-entropy default).
IGNORE_INDEX = -100
#: Answer letters of multiple-choice questions.
MCQ_LETTERS = "ABCD"
#: dtype names accepted on command lines, in the order offered.
DTYPE_NAMES = ("float32", "bfloat16", "float16")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of one of `DTYPE_NAMES` (torch is imported only when asked, so that this
    module stays free to import from every layer)."""
    if name not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(DTYPE_NAMES)}")
    import torch

    dtype: torch.dtype = getattr(torch, name)
    return dtype
