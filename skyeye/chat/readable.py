"""An answer in the model's grammar -> the sentence people read.

The saved conversation keeps the model's own grammar (later turns must see what it wrote):
``<p>water</p> [SEG] Yes. (measured on the mask: water 275 ha, 10.5% of the valid pixels)``.
The terminal, the demo's chat text and the server's message ``content`` show the same answer as
a sentence: ``Yes — water covers 275 ha (10.5 % of the valid pixels), mask 1.``

Rules (`render_readable`, a pure function of the text):
- a leading mask (the looks-first opening ``<p>X</p> [SEG]``) becomes "mask 1" at the end of the
  words; with the chat's measured note, the note's figures are said in words; after a change
  phrase (``<p>changed land cover</p> [SEG] Yes — 38 ha changed (...): water gained ...``) at the
  end of the headline: "Yes — 38 ha changed (...), mask 1: water gained ...";
- in the middle, ``<p>X</p> [SEG]`` -> "X (mask k)", ``<p>X</p> {box}`` -> "X [x1, y1, x2, y2]"
  (0-100 grid, "rotated θ°" for an angle), a bare ``[SEG]`` -> "(mask k)"; an answer with
  boxes ends by saying what the four numbers are (`BOX_LEGEND`), once;
- a grounding token cut off by a stop string or the token limit (``<p>wat``, ``{<12><3``) goes.

`readable_stream` streams an answer as readable pieces that add up to `render_readable` of the
final text: plain words go out as they come; from the first character that may open grounding or
a figure the chat may still rewrite (``<``, ``[``, ``{``, ``(``, a digit) the rest waits for the
measured answer.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import closing
from typing import TYPE_CHECKING

from skyeye.chat.change_seg import is_change_phrase
from skyeye.grounding.grammar import (
    CUT_TOKEN,
    GRAMMAR_TOKEN,
    LEADING_SEG,
    GroundedBox,
    GroundingToken,
    grounding_tokens,
)
from skyeye.grounding.parse import MEASURED_NOTE_FIGURES

if TYPE_CHECKING:
    from skyeye.chat.session import ChatSession

logger = logging.getLogger(__name__)

__all__ = ["readable_box", "readable_stream", "render_readable"]

_VERDICT_ONLY = re.compile(r"^(yes|no)\W*$", re.IGNORECASE)
#: Characters from which a streamed answer is held back (grounding, figures the chat rewrites).
_HOLD = re.compile(r"[<\[{(\d]")


def readable_box(box: GroundedBox) -> str:
    """'[12, 30, 50, 90]' on the 0-100 grid (x1, y1, x2, y2), with ' rotated 15°' for an angle."""
    values = ", ".join(str(int(round(100 * v))) for v in (box.x1, box.y1, box.x2, box.y2))
    turn = f" rotated {box.angle:g}°" if box.angle else ""
    return f"[{values}]{turn}"


def _boxes_run(text: str, tokens: list[GroundingToken], i: int) -> tuple[str, int, int]:
    """The box tokens from ``tokens[i]`` on that follow each other with only spaces between:
    (their boxes in words, the index after the run, the end of the run and its spaces)."""
    boxes: list[GroundedBox] = []
    end = tokens[i].span[0]
    while (
        i < len(tokens) and tokens[i].kind == "boxes" and not text[end : tokens[i].span[0]].strip()
    ):
        boxes.extend(tokens[i].boxes)
        end = tokens[i].span[1]
        i += 1
    return ", ".join(readable_box(b) for b in boxes), i, _skip_spaces(text, end)


def _skip_spaces(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _tokens_in_words(text: str, count: int) -> str:
    """``text`` with its grounding in words: ``<p>X</p> [SEG]`` -> "X (mask k)", ``<p>X</p>
    {box}`` -> "X [x1, y1, x2, y2]", a bare ``[SEG]`` -> "(mask k)" (k from ``count`` + 1)."""
    tokens = list(grounding_tokens(text))
    out: list[str] = []
    pos = i = 0
    masked = None  # the phrase whose mask was just said: "water (mask 1) [10, 4, 81, 58]"
    while i < len(tokens):
        token = tokens[i]
        between = text[pos : token.span[0]]
        out.append(between)
        masked = masked if not between.strip() else None
        pos = token.span[1]
        i += 1
        if token.kind == "phrase":
            phrase = token.phrase or ""
            after = _skip_spaces(text, pos)
            follows = tokens[i] if i < len(tokens) and tokens[i].span[0] == after else None
            if follows is not None and follows.kind == "seg":
                count += 1
                out.append(f"{phrase} (mask {count})".strip() + " ")
                pos, i = follows.span[1], i + 1
                masked = phrase
                continue
            if follows is not None and follows.kind == "boxes":
                words, i, pos = _boxes_run(text, tokens, i)
                out.append(f"{words} " if phrase == masked else f"{phrase} {words} ")
            else:
                out.append(f"{phrase} ")
                pos = after
        elif token.kind == "seg":
            count += 1
            out.append(f"(mask {count}) ")
        else:
            words, i, pos = _boxes_run(text, tokens, i - 1)
            out.append(f"{words} ")
        masked = None
    out.append(text[pos:])
    return "".join(out)


def _note_words(found: re.Match[str], fallback: str | None, bracketed: bool = True) -> str:
    """'water covers 275 ha (10.5 % of the valid pixels)'; not ``bracketed`` (it goes inside
    brackets itself): 'water covers 275 ha, 10.5 % of the valid pixels'."""
    what = found.group("phrase") or fallback or "it"
    share = f"{found.group('share')} % of the valid pixels"
    if found.group("area"):
        area = found.group("area")
        return f"{what} covers {area} ({share})" if bracketed else f"{what} covers {area}, {share}"
    return f"{what} covers {share}"


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+", " ", text)
    # An ellipsis ("land, ...") is words, not a stray stop left by a removed tag: kept as written.
    text = re.sub(r"\s+(?!\.\.\.)([.,;:!?])", r"\1", text)
    text = re.sub(r"([,;:])\1+|(?<!\.)(\.)\.(?!\.)", r"\1\2", text)
    return text.strip()


def _end(words: str, tail: str) -> str:
    """``words`` with ``tail`` before its final full stop: 'There are 3 lakes (mask 1).'"""
    body = words.rstrip()
    stop = ""
    while body and body[-1] in ".!?":
        stop = body[-1] + stop
        body = body[:-1]
    return f"{body}{tail}{stop or '.'}"


#: Said once after an answer with boxes: the numbers mean nothing to a reader without it.
BOX_LEGEND = "boxes: left, top, right, bottom, in % of the image's width and height"


def render_readable(text: str) -> str:
    """The answer ``text`` (the model's grammar plus the chat's notes) as a sentence; an answer
    with boxes ends with `BOX_LEGEND`, once."""
    if not isinstance(text, str):
        return ""
    text = CUT_TOKEN.sub("", text.rstrip())
    words = _render(text)
    if not words or not any(token.kind == "boxes" for token in grounding_tokens(text)):
        return words
    body = words.rstrip(".!? ")
    if body.endswith(")"):  # one bracket: "(mask 1; boxes: ...)."
        return f"{body[:-1]}; {BOX_LEGEND})."
    return _end(words, f" ({BOX_LEGEND})")


def _render(text: str) -> str:
    note = MEASURED_NOTE_FIGURES.search(text)
    if note is not None:
        text = text[: note.start()] + text[note.end() :]
    lead = LEADING_SEG.match(text)
    if lead is not None and re.match(r"\s*(?:$|[A-Z0-9])", text[lead.end() :]) is None:
        lead = None  # "<p>water</p> [SEG] and <p>cloud</p> [SEG]": masks named inline
    lead_phrase = None
    count = 0
    if lead is not None:
        lead_phrase = (lead.group("phrase") or "").strip() or None
        text = text[lead.end() :]
        count = 1

    words = _tidy(GRAMMAR_TOKEN.sub("", _tokens_in_words(text, count)))
    if lead is None:
        if note is not None and words:
            return _end(words, f" ({_note_words(note, None, bracketed=False)})")
        return words
    if note is not None:
        measured = _note_words(note, lead_phrase)
        if not words:
            return f"{measured[0].upper()}{measured[1:]}, mask 1."
        verdict = _VERDICT_ONLY.match(words)
        opening = verdict.group(1).capitalize() if verdict else words.rstrip(".!? ")
        return f"{opening} — {measured}, mask 1."
    if not words:
        return f"{lead_phrase} (mask 1)." if lead_phrase else "(mask 1)"
    if is_change_phrase(lead_phrase):
        # A measured change answer (skyeye.chat.change_answer): "Yes — 38 ha changed (4.1 % of
        # the compared area), mask 1: water gained 12 ha, ..." (the mask after the headline).
        head = re.search(r"[:;]|\.(?:\s|$)", words)
        if head is not None:
            return f"{words[: head.start()]}, mask 1{words[head.start() :]}"
    return _end(words, " (mask 1)")


def _plain_prefix(raw: str, whole_sentences: bool = False) -> str:
    """The start of a raw answer that renders as itself: up to the first character that may
    open grounding or a rewritten figure, and back to the last space (a word may still grow).
    With ``whole_sentences`` (a description, whose figures are restated or dropped with the
    hedge before them: "covers about 20%" may become "covers part"), also back past any hedge
    word that ends it."""
    from skyeye.chat.describe import HEDGES

    held = _HOLD.search(raw)
    head = raw if held is None else raw[: held.start()]
    space = max(head.rfind(" "), head.rfind("\n"))
    head = head[: space + 1] if space >= 0 else ""
    if whole_sentences:
        words = head.split(" ")
        while len(words) > 1 and words[-2].lower() in HEDGES:  # words[-1] is "" after a space
            words = words[:-2] + [""]
        head = " ".join(words)
    return head.lstrip()


def readable_stream(
    session: ChatSession,
    prompt: str,
    cancel: threading.Event | None = None,
    *,
    hold: bool = False,
) -> Iterator[str]:
    """Ask ``prompt`` through ``session.stream`` and yield readable pieces; together they are
    `render_readable` of the answer the session keeps (``session.last_reply.text``).

    hold: stream nothing until the answer is measured (e.g. a count, whose number the chat
    replaces). Errors and cancellation of `ChatSession.stream` pass through.
    """
    from skyeye.chat.describe import asks_description
    from skyeye.chat.grounded import rewrites_words

    hold = hold or rewrites_words(prompt)
    whole_sentences = asks_description(prompt)
    raw, shown = "", ""
    # closing(): a reader that stops early stops the generation now (the session then forgets
    # the question), not whenever the garbage collector gets to the inner generator.
    with closing(session.stream(prompt, cancel)) as pieces:
        for piece in pieces:
            started = not raw
            raw += piece
            if started:
                # The answer has begun: an empty piece tells a caller (the server, which answers
                # errors found before the first token as plain 4xx) that generation runs, even
                # while the words are held back.
                yield ""
            if hold:
                continue
            safe = _plain_prefix(raw, whole_sentences)
            if len(safe) > len(shown) and safe.startswith(shown):
                yield safe[len(shown) :]
                shown = safe
    assert session.last_reply is not None
    final = render_readable(session.last_reply.text)
    if final.startswith(shown):
        if len(final) > len(shown):
            yield final[len(shown) :]
    else:  # cannot happen by construction; say so rather than send a garbled answer
        logger.warning("the streamed words are not a prefix of the readable answer")
        yield "\n" + final
