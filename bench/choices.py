"""Benchmark: multiple choice answered by the chat against one generated answer.

    python bench/choices.py [--repeats 5] [--threads 1] [--dtype auto]

Three 4-option questions about the bundled Sentinel-2 example, each asked of the embedded
skyeye-tiny in a fresh session per repeat, answered two ways in alternating order: generated
(`mcq_scoring="generate"`, `measure=False`: the LLM writes its answer) and as the chat answers it
(`"likelihood"`, measured): option likelihood (the prompt with its image run once, the four
stated options scored as one batch on its KV cache, `skyeye.chat.choices`), the scene head
(`skyeye.chat.scene_choice`: one tower pass) and "which covers the most?" among decoder classes
(`skyeye.chat.cover_choice`: one class question per option). Every timing includes reading the
prompt and encoding the image. Reported: median seconds of each, the ratio chat / generated per
question (issue 29's target for the likelihood scorer: <= 1.5x), the answers.
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
QUESTIONS = {
    "likelihood": "What covers most of this image?\nA. Forest\nB. A lake\nC. Farmland\nD. A city\n"
    "Answer with the option's letter.",
    "scene_head": "Which scene class best describes this image?\nA. forest\nB. lake\n"
    "C. farmland\nD. dense residential\nAnswer with the letter.",
    "cover": "Which of these covers the largest part of this image?\nA. vegetation\nB. water\n"
    "C. cloud\nD. bare land\nAnswer with the letter.",
}


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
        "generate": dataclasses.replace(loaded.settings, mcq_scoring="generate", measure=False),
        "chat": dataclasses.replace(loaded.settings, mcq_scoring="likelihood"),
    }
    times: dict[tuple[str, str], list[float]] = {(q, w): [] for q in QUESTIONS for w in ways}
    answers: dict[str, str] = {}
    for repeat in range(args.repeats + 1):  # the first round warms up
        order = list(ways) if repeat % 2 else list(ways)[::-1]
        for name, question in QUESTIONS.items():
            for way in order:
                session = ChatSession(loaded.model, loaded.processor, ways[way])
                session.add_image(image)
                start = time.perf_counter()
                answers[f"{name}/{way}"] = session.ask(question).text
                if repeat:
                    times[(name, way)].append(time.perf_counter() - start)
    med = {key: statistics.median(t) for key, t in times.items()}
    print(
        json.dumps(
            {
                "median_s": {f"{q}/{w}": round(v, 4) for (q, w), v in med.items()},
                "chat_over_generate": {
                    q: round(med[(q, "chat")] / med[(q, "generate")], 3) for q in QUESTIONS
                },
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
