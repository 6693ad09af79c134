"""Benchmark: the chat's one-shot time on the example, this checkout against an earlier one.

    git archive 3db1d86 | tar -x -C /tmp/before      # the code and skyeye-tiny of before
    python bench/chat_oneshot.py --before /tmp/before [--rounds 2] [--repeats 3] [--threads 1]

"One-shot" is what a user of ``python -m skyeye.chat --image examples/sentinel2_berlin_l1c.tif``
waits for per question: a fresh session, ``add_image`` (read + checks) and ``ask`` (processing,
generation, masks, measured figures), the model already loaded. Each configuration runs in its
own subprocess (the two checkouts are both called ``skyeye``) with its own code and its own
embedded skyeye-tiny, bfloat16 weights (what both chats' ``--dtype auto`` picks on this CPU), a
warm-up question, then ``repeats`` timed ones; the configurations alternate for ``rounds``
rounds so that a change in the machine's load falls on both. A third configuration, this
checkout's code with the earlier model (``--before``'s skyeye-tiny folder), separates what the
code changed from what the model's answer changed. Reported: median seconds, the answer, the
ratio to "before".
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

# The chat question and example of bench/mask_decoder.py's chat run, so the two measure one thing.
from mask_decoder import EXAMPLE, PROMPT, REPO

# Runs inside the checkout `root`. The earlier layout had `skyeye.inference.load_chat`; today's is
# `skyeye.chat.session.load_chat` (same arguments for what is used here).
_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
try:
    from skyeye.chat.session import load_chat
except ImportError:
    from skyeye.inference import load_chat
session = load_chat({model!r}, dtype=torch.bfloat16)
model, processor = session.model, session.processor
times, answer = [], None
for i in range({repeats} + 1):
    chat = type(session)(model, processor)
    t = time.perf_counter()
    chat.add_image({image!r})
    reply = chat.ask({prompt!r})
    if i:
        times.append(time.perf_counter() - t)
    answer = reply.text
print(json.dumps({{"times": times, "answer": answer, "masks": [list(m.shape) for m in reply.masks]}}))
"""


def run_config(root: Path, model: str, repeats: int, threads: int) -> dict:
    """One subprocess: `repeats` timed one-shots of `model` with the code in `root`."""
    code = _CHILD.format(
        root=str(root),
        threads=threads,
        model=model,
        repeats=repeats,
        image=str(EXAMPLE),
        prompt=PROMPT,
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, required=True, help="the earlier checkout (git archive)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--model",
        default="skyeye-tiny",
        help="this checkout's model: the embedded one, or a candidate folder not yet installed",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    # The bundled models' folder: skyeye/bundled, skyeye/models in checkouts before issue 27.
    before_model = args.before / "skyeye" / "bundled" / "skyeye-tiny"
    if not before_model.is_dir():
        before_model = args.before / "skyeye" / "models" / "skyeye-tiny"
    if not before_model.is_dir():
        print(f"error: {before_model} is not a model folder: pass a checkout", file=sys.stderr)
        return 2
    configs = {
        "before (its code, its model)": (args.before, "skyeye-tiny"),
        "now (this code, this model)": (REPO, args.model),
        "this code, the earlier model": (REPO, str(before_model)),
    }
    results: dict[str, dict] = {name: {"times": []} for name in configs}
    for _ in range(args.rounds):
        for name, (root, model) in configs.items():
            got = run_config(root, model, args.repeats, args.threads)
            results[name]["times"] += got["times"]
            results[name]["answer"] = got["answer"]
            results[name]["masks"] = got["masks"]
    base = statistics.median(results["before (its code, its model)"]["times"])
    for r in results.values():
        r["median_seconds"] = statistics.median(r["times"])
        r["ratio_to_before"] = r["median_seconds"] / base
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for name, r in results.items():
            print(
                f"{name}: {r['median_seconds']:.2f} s ({r['ratio_to_before']:.2f}x before; "
                f"{len(r['times'])} runs) -> {r['answer']!r} masks {r['masks']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
