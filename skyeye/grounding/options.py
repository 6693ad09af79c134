"""The lettered options of a multiple-choice question, in the layouts people and benchmarks write.

Recognised markers: ``A.``, ``A)``, ``A:``, ``(A)`` and ``[A]``, one option per line or all on one
line ("Which is it? A. forest B. river C. lake", "Options: (A) forest, (B) river"); the same in
lower case ("a. forest b. river") when there is no capital list and it runs to b at least. The
options' letters are capitals either way (the answer is "B. river"). The options
are the longest run of markers lettered A, B, C, ... in reading order, so a stray capital with a
full stop inside the question ("the U.S. coast") does not start one. An option text that repeats
its own letter ("A. A. The remote sensing image ...", as one benchmark converter writes them)
keeps the text once.

`parse_options` returns None when the text holds no multiple-choice question, and raises
`OptionsError` (a plain sentence for the user) when it holds one that cannot be answered: a
single option, more options than letters, an empty option.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from skyeye.errors import OptionsError

#: An option marker: a capital letter in brackets or followed by ".", ")" or ":", standing at
#: the start of a line or after a space, comma, semicolon or colon, then a space.
_MARKER = re.compile(
    r"(?:(?<=^)|(?<=[\s,;:]))(?:\((?P<a>[A-Z])\)|\[(?P<b>[A-Z])\]|(?P<c>[A-Z])[.):])(?=\s)",
    re.MULTILINE,
)
#: The same in lower case ("a. forest b. water"): an option list only when it runs to b at least.
_MARKER_LOWER = re.compile(_MARKER.pattern.replace("A-Z", "a-z"), re.MULTILINE)
_SEPARATOR = re.compile(r"[\s,;]+$")
_OWN_LETTER = r"^\(?{letter}[.):\]]\s+"


@dataclass(frozen=True)
class Option:
    """One answer option: its letter and its text (no marker, no trailing separator)."""

    letter: str
    text: str


@dataclass(frozen=True)
class MultipleChoice:
    """A question split into its stem (the text before the first option) and its options."""

    stem: str
    options: tuple[Option, ...]

    @property
    def letters(self) -> list[str]:
        return [o.letter for o in self.options]

    def option(self, letter: str) -> Option:
        """The option lettered ``letter`` (case-insensitive); KeyError when there is none."""
        for o in self.options:
            if o.letter == letter.upper():
                return o
        raise KeyError(letter)


def _markers(question: str, marker: re.Pattern[str]) -> list[tuple[re.Match[str], str]]:
    """Every option marker of ``question`` with its letter, in capitals."""
    return [
        (m, (m.group("a") or m.group("b") or m.group("c")).upper())
        for m in marker.finditer(question)
    ]


def _chain(markers: list[tuple[re.Match[str], str]]) -> list[re.Match[str]]:
    """The run of markers lettered A, B, C, ... in reading order."""
    chain: list[re.Match[str]] = []
    for match, letter in markers:
        if len(chain) < 26 and letter == string.ascii_uppercase[len(chain)]:
            chain.append(match)
    return chain


def parse_options(question: str) -> MultipleChoice | None:
    """Split ``question`` into stem and lettered options; None when it lists none (a lone
    "A." or "A:" inside a sentence is not an option list).

    Raises:
        OptionsError: one option only, an option with no text, or options past "Z".
    """
    if not isinstance(question, str):
        return None
    markers = _markers(question, _MARKER)
    chain = _chain(markers)
    if not chain:
        markers = _markers(question, _MARKER_LOWER)
        chain = _chain(markers)
        if len(chain) < 2:  # a lone "a." or "b)" is prose, never a one-option list
            return None
    if len(chain) == 1:
        first = chain[0]
        before = question[: first.start()].rstrip(" \t")
        # "Plan A: ..." inside a sentence is no option list; after a line break, a question mark
        # or a colon ("Which is it? A. harbor", "Options: A. harbor") it is one, of one option.
        lone = first.group("c") and before and not before.endswith(("\n", "?", ":"))
        if lone:
            return None
        raise OptionsError(
            "the question lists a single option (A): give at least two options to choose from"
        )
    if len(chain) == 26 and any(m.start() > chain[-1].start() for m, _ in markers):
        raise OptionsError(
            "the question lists more than 26 options: letters A-Z can name at most 26; split it"
        )
    # One option per line: the last one ends with its line (an instruction may follow).
    per_line = all(
        "\n" in question[a.end() : b.start()] for a, b in zip(chain, chain[1:], strict=False)
    )
    options: list[Option] = []
    for k, match in enumerate(chain):
        end = chain[k + 1].start() if k + 1 < len(chain) else len(question)
        if k + 1 == len(chain) and per_line and "\n" in question[match.end() :].strip():
            end = question.index("\n", match.end() + 1)
        letter = string.ascii_uppercase[k]
        text = _SEPARATOR.sub("", question[match.end() : end]).strip()
        text = re.sub(_OWN_LETTER.format(letter=letter), "", text).strip()
        if not text:
            raise OptionsError(f"option {letter} has no text: write what option {letter} says")
        options.append(Option(letter, text))
    return MultipleChoice(stem=question[: chain[0].start()].strip(), options=tuple(options))


def format_choice(option: Option) -> str:
    """The answer stating one option: 'C. a lake'."""
    return f"{option.letter}. {option.text}"
