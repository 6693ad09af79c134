"""Names shared across SkyEye's layers: special tokens, the label ignore index, MCQ letters and
the dtype names the entry points accept. One copy of each; import them from here."""

from __future__ import annotations

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
