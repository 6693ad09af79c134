"""Change questions and answers (no external model): what changed, where X appeared/disappeared,
how much, did anything change.

Answers look first, as every mask answer of skyeye-tiny does: the change mask's ``[SEG]`` opens
the answer and the words after it state what that mask measures (share of the pair's common valid
area, hectares), so the chat's measured-answer rule (`skyeye.chat.measured`) applies unchanged.
Each ``pick`` draws one phrasing with the caller's seeded generator: output is deterministic.
"""

from __future__ import annotations

import numpy as np

from skyeye.grounding.grammar import seg_opening

#: Change share from which "did anything change?" is answered yes, and at or below which no
#: (between them the question is not asked: too little to call either way), as the presence
#: labels of from_rasters (present from 1 %, absent at 0 %).
YES_FROM_SHARE = 0.01
NO_AT_SHARE = 0.0

WHAT_CHANGED = (
    "What changed between these two images?",
    "Compare the two images: what is different?",
    "Describe the changes from the first image to the second.",
    "What has changed here between the two dates?",
)
SHOW_APPEARED = (
    "Show where {cls} appeared.",
    "Segment the {cls} that is new in the second image.",
    "Where was {cls} added between the two dates?",
)
SHOW_DISAPPEARED = (
    "Show where {cls} disappeared.",
    "Segment the {cls} that is gone in the second image.",
    "Where was {cls} lost between the two dates?",
)
#: ``{what}``: "urban area was built", "land changed", "water appeared", ...
HOW_MUCH = (
    "How much {what} between the two dates, in hectares?",
    "In hectares, how much {what}?",
    "Estimate in hectares how much {what}.",
)
ANYTHING = (
    "Did anything change between these two images? Answer yes or no.",
    "Is there any change between the two dates?",
    "Has anything changed? Answer yes or no.",
)


def pick(rng: np.random.Generator, options: tuple[str, ...], **fields: str) -> str:
    """One of ``options`` drawn by ``rng``, formatted with ``fields``."""
    return options[int(rng.integers(len(options)))].format(**fields)


def percent(share: float) -> str:
    """0.0123 -> '1.2%' (one decimal below 10 %, whole numbers above)."""
    value = 100 * share
    return f"{value:.1f}%" if value < 10 else f"{value:.0f}%"


def hectares(ha: float) -> str:
    """12.345 -> '12.3 ha' (two significant decimals below 1 ha)."""
    return f"{ha:.2f} ha" if ha < 1 else f"{ha:.1f} ha" if ha < 100 else f"{ha:.0f} ha"


def seg(phrase: str) -> str:
    """The answer's mask opening: ``<p>phrase</p> [SEG]`` (the grammar's, as the chat forces it)."""
    return seg_opening([phrase])


def what_changed_answer(
    change_phrase: str, share: float, ha: float | None, kinds: str, transitions: list[str]
) -> str:
    """Mask first, then the measured share/area and what the change is."""
    if share <= NO_AT_SHARE:
        return f"{seg(change_phrase)} Nothing visible changed between the two dates."
    size = percent(share) + (f" ({hectares(ha)})" if ha is not None else "")
    text = f"{seg(change_phrase)} About {size} of the area changed: {kinds}."
    if transitions:
        joined = "; ".join(transitions)
        text += " " + joined[:1].upper() + joined[1:] + "."
    return text


def anything_answer(change_phrase: str, share: float) -> str | None:
    """'<p>..</p> [SEG] Yes.' / 'No.', or None when the share is between the two cut-offs."""
    if share >= YES_FROM_SHARE:
        return f"{seg(change_phrase)} Yes."
    if share <= NO_AT_SHARE:
        return f"{seg(change_phrase)} No."
    return None
