"""Benchmark: a follow-up question with the conversation's KV cache kept vs recomputed.

    python bench/chat_turns.py [--repeats 3] [--threads 1] [--dtype auto]

A user of the terminal chat or the demo asks about one image, then asks a follow-up. The first
turn encodes the image and reads the whole prompt; the follow-up, with `skyeye.chat.prefix_cache`,
feeds only its new tokens. Measured in one process on the embedded skyeye-tiny and the bundled
Sentinel-2 example, per repeat on a fresh session: time to first token (TTFT: the first logits of
the answer exist, a hook on the LLM's output layer), time to the first streamed text (a few tokens
later: the streamer shows whole words) and total time, of turn 1, of turn 2 with the cache, and of
turn 2 recomputed from nothing (the same session state, cache dropped), in alternating order.
Reported: medians, the ratios turn 2 cached / turn 1 (issue 30's target: TTFT <= 0.5x) and cached
/ recomputed, and whether the answers are identical.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"
FIRST, SECOND = "Is there water in this image?", "How much of the image is water?"


def timed_turn(session, prompt: str) -> tuple[float, float, float, str]:
    """(seconds to the first token, to the first streamed text, in all; answer) of a question."""
    logits: list[float] = []
    head = session.model.language_model.get_output_embeddings()
    hook = head.register_forward_hook(lambda *_: logits.append(time.perf_counter()))
    start, first = time.perf_counter(), None
    try:
        for piece in session.stream(prompt):
            if first is None and piece.strip():
                first = time.perf_counter() - start
    finally:
        hook.remove()
    total = time.perf_counter() - start
    assert session.last_reply is not None
    text = first if first is not None else total
    return logits[0] - start, text, total, session.last_reply.text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from skyeye.chat.loading import chat_dtype
    from skyeye.chat.session import ChatSession, load_chat

    loaded = load_chat("skyeye-tiny", dtype=chat_dtype(args.dtype, "cpu"))
    names = [f"{t}{k}" for t in ("t1", "t2", "t2_full") for k in ("", "_text", "_total")]
    rows: dict[str, list[float]] = {k: [] for k in names}
    same = True
    for repeat in range(args.repeats + 1):  # the first round warms up
        session = ChatSession(loaded.model, loaded.processor, loaded.settings)
        session.add_image(EXAMPLE)
        t1, t1_text, t1_total, _ = timed_turn(session, FIRST)
        recompute = copy.copy(session)  # same turns; its own message list and an empty cache
        recompute.messages = list(session.messages)
        recompute._prefix = type(session._prefix)()
        recompute._features = None  # and the images processed again, as a first turn does
        order = [("t2", session), ("t2_full", recompute)]
        for name, chat in order if repeat % 2 else order[::-1]:
            ttft, text, total, answer = timed_turn(chat, SECOND)
            if repeat:
                rows[name].append(ttft)
                rows[f"{name}_text"].append(text)
                rows[f"{name}_total"].append(total)
            if name == "t2":
                cached_answer = answer
            else:
                full_answer = answer
        same &= cached_answer == full_answer
        if repeat:
            rows["t1"].append(t1)
            rows["t1_text"].append(t1_text)
            rows["t1_total"].append(t1_total)
    med = {k: statistics.median(v) for k, v in rows.items()}
    report = {
        "medians_s": {k: round(v, 4) for k, v in med.items()},
        "ttft_turn2_cached_over_turn1": round(med["t2"] / med["t1"], 3),
        "ttft_turn2_cached_over_recomputed": round(med["t2"] / med["t2_full"], 3),
        "first_text_turn2_cached_over_turn1": round(med["t2_text"] / med["t1_text"], 3),
        "total_turn2_cached_over_recomputed": round(med["t2_total"] / med["t2_full_total"], 3),
        "answers_identical": same,
        "answer_turn2": cached_answer,
        "threads": args.threads,
        "dtype": args.dtype,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
