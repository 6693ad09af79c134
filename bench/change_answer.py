"""The change answer's cost against a generated answer about the same pair, in one process.

A change question ("What changed between these dates?") is answered by measurement
(`skyeye.chat.change_answer`): one forward pass with the forced change opening over both dates,
then one forward per date for the class masks of the transitions. The baseline is a generated
answer that draws one mask ("Is there water in the second image?"). Each is timed called from
the main thread and from a worker thread (where `ChatSession.stream` runs generation, the API
server its answers and Gradio its handlers), in alternating rounds; the table gives medians and
the ratio change / generated.

    .venv/bin/python bench/change_answer.py --model /tmp/chg/run2/model \\
        --image ../shared/data/opengeos-naip-landsat/landsat/2000.tif \\
        --image ../shared/data/opengeos-naip-landsat/landsat/2020.tif \\
        --wavelengths 1.65,0.835,0.66,0.56 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

BASELINE_QUESTION = "Is there water in the second image?"


def _timed(call: Callable[[], Any], in_thread: bool) -> float:
    """Seconds ``call`` takes, run here or in a fresh thread."""
    out: dict[str, float] = {}

    def run() -> None:
        start = time.perf_counter()
        call()
        out["s"] = time.perf_counter() - start

    if in_thread:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    else:
        run()
    return out["s"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model folder with a change decoder")
    parser.add_argument("--image", action="append", required=True, help="before, then after")
    parser.add_argument("--wavelengths", default=None, help="µm per band, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    args = parser.parse_args(argv)
    if len(args.image) != 2:
        print("error: give --image twice (before, after)", file=sys.stderr)
        return 2

    import torch

    from skyeye.chat.change_answer import ask_change
    from skyeye.chat.multi_date import prepare_dated_images
    from skyeye.chat.session import load_chat
    from skyeye.io.raster import read_raster

    if args.threads:
        torch.set_num_threads(args.threads)
    session = load_chat(args.model)
    if getattr(session.model, "change_head", None) is None:
        print(f"error: {args.model} has no change decoder (mask_change)", file=sys.stderr)
        return 2
    waves = [float(w) for w in args.wavelengths.split(",")] if args.wavelengths else None
    kwargs: dict[str, Any] = {"max_size": session.settings.read_size}
    if waves:
        kwargs["wavelengths"] = waves
    images = prepare_dated_images([read_raster(p, **kwargs) for p in args.image]).images

    def ask(question: str | None) -> Callable[[], Any]:
        def call() -> Any:
            session.reset()
            for image in images:
                session.add_image(image)
            return ask_change(session) if question is None else session.ask(question)

        return call

    ask(BASELINE_QUESTION)()  # warm-up
    times: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.rounds):
        for in_thread in (False, True):
            for name, question in (("change", None), ("generated", BASELINE_QUESTION)):
                seconds = _timed(ask(question), in_thread)
                times.setdefault((name, in_thread), []).append(seconds)
                print(f"{name} ({'worker' if in_thread else 'main'} thread): {seconds:.1f} s")
    print("\n| called from | change answer | generated answer | ratio |\n|---|---|---|---|")
    for in_thread in (False, True):
        change = statistics.median(times[("change", in_thread)])
        generated = statistics.median(times[("generated", in_thread)])
        where = "a worker thread" if in_thread else "the main thread"
        print(f"| {where} | {change:.1f} s | {generated:.1f} s | {change / generated:.2f}x |")
    print(f"(torch threads {torch.get_num_threads()}, medians of {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
