"""Scene multiple choice scored against the image by the scene head.

"Which scene class best describes this image? A. forest B. river ..." is a question about the
whole image whose options are names. When the model has a scene head
(`skyeye.modeling.scene_head`) and the conversation one image, the answer is the option whose
name the head scores highest against the image, not the LLM's likelihood (which does not change
with the image for these questions: docs/evaluation.md). Other multiple-choice questions (counts,
colours, sensors, long options) are left to the likelihood scorer.

"Is this image mainly X?" about a name X the mask decoder does not outline ("freeway") is
answered by the same head (`scene_verdict`): X's rank among the scene names the head was trained
on, yes within the cut-off the scene stage picked on images it kept out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from skyeye.grounding.options import MultipleChoice
from skyeye.modeling.scene_head import scene_scores

__all__ = [
    "is_scene_question",
    "scene_choice",
    "scene_name",
    "scene_name_ids",
    "scene_verdict",
    "sees_visible",
]

#: Stems that ask what the whole image is: its scene, land cover / use, class or category.
_SCENE_STEM = re.compile(
    r"\b(scene|land[ -]?(?:cover|use)|category|class(?:ify|es)?|"
    r"(?:kind|type)\s+of\s+(?:area|place|land|landscape|region|site|image)|"
    r"best\s+describes?)\b",
    re.IGNORECASE,
)
#: Names are short and wordy: at most this many words, no digits (counts, years, sizes).
_MAX_NAME_WORDS = 5
_DIGIT = re.compile(r"\d")
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
#: The head learnt scenes from RGB photos (AID): it reads an image only through visible bands.
VISIBLE_UM = (0.4, 0.7)


def sees_visible(wavelengths: Any) -> bool:
    """True when any band's wavelength (µm; a tensor or sequence) lies in the visible range: a
    SAR image (its placeholder wavelength) or a NIR / SWIR band alone is outside what the head
    learnt, and it is not asked."""
    values = wavelengths.tolist() if hasattr(wavelengths, "tolist") else list(wavelengths)
    return any(VISIBLE_UM[0] <= float(w) <= VISIBLE_UM[1] for w in values)


def scene_name(name: str) -> str:
    """A name as the head reads it: lower case, no leading article, no trailing punctuation
    ('A lake.' -> 'lake')."""
    return _ARTICLE.sub("", name.strip().rstrip(".!?;:,").strip().lower())


def is_scene_question(choice: MultipleChoice) -> bool:
    """True when the stem asks for the image's scene / land-cover class and every option reads
    as a name (at most five words, no digits)."""
    if not _SCENE_STEM.search(choice.stem):
        return False
    return all(
        0 < len(o.text.split()) <= _MAX_NAME_WORDS and not _DIGIT.search(o.text)
        for o in choice.options
    )


def scene_name_ids(tokenizer: Any, names: Sequence[str]) -> list[list[int]]:
    """Token ids of each name as the scene head reads it (`scene_name`), after a space (the form
    a name takes inside a sentence)."""
    return [
        list(tokenizer(" " + scene_name(name), add_special_tokens=False)["input_ids"])
        for name in names
    ]


def scene_choice(
    model: Any, tokenizer: Any, inputs: dict[str, Any], choice: MultipleChoice
) -> int | None:
    """Index of the option the scene head scores highest against the prompt's one image, or
    None when the model has no scene head, the prompt has not exactly one image, the image has no
    visible band (`sees_visible`), or the question is not a scene question
    (`is_scene_question`)."""
    if getattr(model, "scene_head", None) is None or not is_scene_question(choice):
        return None
    pixels, wavelengths = inputs.get("pixel_values"), inputs.get("wavelengths")
    if pixels is None or wavelengths is None or len(pixels) != 1:
        return None
    scores = _image_scores(
        model, tokenizer, pixels[0], wavelengths[0], [o.text for o in choice.options]
    )
    return None if scores is None else int(scores.argmax())


def _image_scores(
    model: Any, tokenizer: Any, pixels: Any, wavelengths: Any, names: Sequence[str]
) -> Any:
    """(K,) scene-head scores of ``names`` against one image (pixel_values (C, H, W),
    wavelengths (C,)), or None for an image without a visible band (`sees_visible`)."""
    if not sees_visible(wavelengths):
        return None
    device = model.device
    ids = scene_name_ids(tokenizer, names)
    return scene_scores(model, [pixels.to(device)], [wavelengths.to(device)], ids)[0]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def scene_verdict(model: Any, tokenizer: Any, image: dict[str, Any], name: str) -> str | None:
    """'Yes: ...' / 'No: ...' to "is this image mainly ``name``?" by the scene head: ``name``'s
    rank among the scene names the head was trained on (``config.scene_names``, ``name`` put
    among them), yes within ``config.scene_top_k``. ``image``: the processor's tensors of the
    one image (pixel_values (C, H, W), wavelengths (C,)). None without a scene head or names, or
    for an image without a visible band."""
    config = model.config
    if getattr(model, "scene_head", None) is None or not getattr(config, "scene_names", None):
        return None
    wanted = scene_name(name)
    vocab = [wanted] + [n for n in config.scene_names if scene_name(n) != wanted]
    scores = _image_scores(model, tokenizer, image["pixel_values"], image["wavelengths"], vocab)
    if scores is None:
        return None
    rank = int((scores > scores[0]).sum()) + 1
    k = config.scene_top_k
    verdict = "Yes" if rank <= k else "No"
    return (
        f'{verdict}: the scene head ranks "{wanted}" {_ordinal(rank)} of {len(vocab)} scene names '
        f"for this image (yes within the first {k})."
    )
