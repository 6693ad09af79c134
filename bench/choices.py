"""Benchmark: multiple choice by option likelihood against one generated answer.

    python bench/choices.py [--repeats 5] [--threads 1] [--dtype auto]

The same 4-option question about the bundled Sentinel-2 example, asked of the embedded
skyeye-tiny in a fresh session per repeat, answered two ways in alternating order: generated
(`mcq_scoring="generate"`: the LLM writes its answer) and scored (`"likelihood"`: the prompt with
its image is run once and the four stated options are scored as one batch on its KV cache,
`skyeye.chat.choices`). Both include reading the prompt and encoding the image. Reported:
median seconds of each, the ratio scored / generated (issue 29's target: <= 1.5x), the answers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"
QUESTION = (
    "What covers most of this image?\nA. Forest\nB. A lake\nC. Farmland\nD. A city\n"
    "Answer with the option's letter."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from skyeye.chat.loading import chat_dtype
    from skyeye.chat.session import ChatSession, load_chat

    loaded = load_chat("skyeye-tiny", dtype=chat_dtype(args.dtype, "cpu"))
    image = ChatSession(loaded.model, loaded.processor).add_image(EXAMPLE)
    ways = {
        way: dataclasses.replace(loaded.settings, mcq_scoring=way)
        for way in ("generate", "likelihood")
    }
    times: dict[str, list[float]] = {way: [] for way in ways}
    answers: dict[str, str] = {}
    for repeat in range(args.repeats + 1):  # the first round warms up
        order = list(ways) if repeat % 2 else list(ways)[::-1]
        for way in order:
            session = ChatSession(loaded.model, loaded.processor, ways[way])
            session.add_image(image)
            start = time.perf_counter()
            answers[way] = session.ask(QUESTION).text
            if repeat:
                times[way].append(time.perf_counter() - start)
    med = {way: statistics.median(t) for way, t in times.items()}
    print(
        json.dumps(
            {
                "median_s": {k: round(v, 4) for k, v in med.items()},
                "likelihood_over_generate": round(med["likelihood"] / med["generate"], 3),
                "answers": answers,
                "threads": args.threads,
                "dtype": args.dtype,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
