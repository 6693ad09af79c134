"""Text templates (no external model): captions, presence, proportion, box and mask questions.

Each ``pick`` draws one phrasing with the caller's seeded generator, so output is deterministic.
``{img}`` names the image ("this Sentinel-2 image"), ``{cls}`` the class.
"""

from __future__ import annotations

import numpy as np

CAPTION_PROMPTS = (
    "Describe the land cover in {img}.",
    "What does {img} show? Give the main land-cover types with their approximate shares.",
    "Write a short description of {img}, with proportions and positions of the land cover.",
    "Summarise the composition of {img}.",
)
PRESENCE_PROMPTS = (
    "Is there any {cls} in {img}? Answer yes or no.",
    "Does {img} contain {cls}? Answer yes or no.",
    "Can you see {cls} in {img}?",
    "Is {cls} present in {img}?",
    "Is there {cls} in {img}?",
)
YES = ("Yes.", "Yes, there is {cls} {where}.")
NO = ("No.", "No, there is no {cls} in the image.")
PROPORTION_PROMPTS = (
    "What share of {img} is covered by {cls}?",
    "Roughly what percentage of {img} is {cls}?",
    "How much of {img} is {cls}? Give a percentage.",
)
PROPORTION_ANSWERS = (
    "{pct}.",
    "{Pct} of the image is {cls}.",
    "{cls_cap} covers {pct} of the image.",
)
REFER_PROMPTS = (
    "[refer] Where is the largest area of {cls} in {img}?",
    "[refer] Give the bounding box of the biggest {cls} region in {img}.",
    "[refer] Locate the largest patch of {cls}.",
)
REFER_ANSWERS = ("<p>{cls}</p> {box}", "The largest {cls} region is at {box}.")
SEG_PROMPTS = (
    "Segment all {cls} in {img}.",
    "Please outline the {cls} in {img}.",
    "Show me where the {cls} is in {img} with a mask.",
)
# Multiple choice: a question, the options one per line ("A. water"), an instruction (the last
# one is skyeye.evaluation's default, so benchmark-style prompts are in the training mix).
MCQ_QUESTIONS = (
    "Which of these covers the largest part of {img}?",
    "What is the main land cover in {img}?",
    "Which class covers the most ground in {img}?",
)
MCQ_INSTRUCTIONS = (
    "Answer with the letter.",
    "Reply with A, B, C or D.",
    "Answer with the option's letter from the given choices directly.",
)
MCQ_ANSWERS = ("{letter}", "{letter}.")
COUNT_PROMPTS = (
    "How many separate {cls} areas of at least {min_px} pixels are there in {img}? "
    "Answer with a number.",
    "Count the separate patches of {cls} in {img} (at least {min_px} pixels each). "
    "Answer with a number.",
)
COUNT_ANSWERS = ("{n}", "{n}.")
# Short on purpose: every answer token is one LLM decoding step (~70 ms on a laptop-class CPU), and a
# preamble ("Here is the water: ...") repeats the phrase the mask already names (the chat's one-shot
# time, issue 12). Three entries, so the generator draws as many random numbers as before.
SEG_ANSWERS = ("<p>{cls}</p> [SEG]", "<p>{cls}</p> [SEG].", "Sure, [SEG].")
FIRST = ("The image shows {cls} ({pct}), {where}.", "{Cls} covers {pct} of the image, {where}.")
ALMOST_ALL = ("The image is almost entirely {cls}.", "Nearly the whole image is {cls}.")
ORDINAL_LEAD = (
    "{Cls} dominates the image ({pct}), {where}.",
    "Most of the image is {cls} ({pct}), {where}.",
)
SECOND = ("{Cls} covers {pct}, {where}.", "There is also {cls} ({pct}), {where}.")
MINOR = ("Smaller areas of {cls} ({pct}) lie {where}.", "{Cls} makes up {pct}, {where}.")
REST = "The remaining area ({pct}) is {cls} (none of: {others})."
UNLABELLED = "{Pct} of the image carries no label in the {src} data."


def pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def fill(template: str, **kw: str) -> str:
    """Format ``template``; ``Cls``/``Pct``/``cls_cap`` are capitalised forms of cls / pct."""
    if "cls" in kw:
        kw.setdefault("Cls", cap(kw["cls"]))
        kw.setdefault("cls_cap", cap(kw["cls"]))
    if "pct" in kw:
        kw.setdefault("Pct", cap(kw["pct"]))
    return template.format(**kw)
