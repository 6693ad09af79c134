"""Benchmark: an answer's image path (read the raster, then the processor), its vision path or the
whole in-process answer, of two source trees in one run.

    python bench/image_path.py [--tree .] [--tree /tmp/base] [--rounds 5] [--repeats 15]
                               [--stage image|vision|answer]

Every answer about an image pays this before the tower runs: `skyeye.io.read_raster(path,
max_size=512)` (the chat's read) and `SkyEyeProcessor.image_processor(image)` (the value-scaling
decision, scaling, the 128 px tower input and the 512 px mask-decoder input, normalised). Each
``--tree`` (a checkout of this repository, e.g. ``git worktree add /tmp/base HEAD~1``) is timed in
its own subprocess with one torch thread, on the bundled Sentinel-2 example (13 bands, uint16,
512 px) and the Sentinel-1 example (VV/VH dB), trees alternating round by round. Reported: the
median per tree over rounds of each round's median, the ratio of every tree to the first, and
whether the trees' processed tensors are identical (an MD5 of each output).

``--stage vision``: the processed Sentinel-2 example through the model's vision path
(`get_image_features`: tower and projector; skyeye-tiny in bfloat16), MD5 of the features.
``--stage answer``: what the terminal chat does for one question, in process: a fresh
`ChatSession` turn (`reset`, `add_image(path)`, `ask("Is there water in this image?")`, skyeye-tiny
in bfloat16), MD5 of the answer's text. Both on the Sentinel-2 example only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "sentinel-2": REPO / "examples" / "sentinel2_berlin_l1c.tif",
    "sentinel-1": REPO / "examples" / "sentinel1_vv_vh.tif",
}

# Run inside each tree (its own imports): times and output digests as one JSON line. Each stage
# defines run(path, sensor) -> the bytes digested.
CHILD = r"""
import hashlib, json, statistics, sys, time
import torch
torch.set_num_threads(1)
from skyeye import SkyEyeProcessor, read_raster
model, repeats, examples, stage = (sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]),
                                   sys.argv[4])
if stage == "image":
    processor = SkyEyeProcessor.from_pretrained(model).image_processor
else:
    from skyeye.chat.session import load_chat
    chat = load_chat(model, dtype=torch.bfloat16)

def runner(path, sensor):
    if stage == "image":
        def run():
            features = processor(read_raster(path, max_size=512, sensor=sensor))
            return b"".join(features[k][0].numpy().tobytes()
                            for k in ("pixel_values", "pixel_values_hires"))
    elif stage == "answer":
        def run():
            chat.reset()
            chat.add_image(path, sensor=sensor)
            return chat.ask("Is there water in this image?").text.encode()
    else:  # vision: only the model's part, the image read and processed once
        chat.add_image(path, sensor=sensor)
        inputs = chat.processor.image_processor(chat.images[-1])
        def run():
            with torch.no_grad():
                out = chat.model.get_image_features(inputs["pixel_values"], inputs["wavelengths"])
            return out.float().numpy().tobytes()
    return run

out = {}
for name, path in examples.items():
    run = runner(path, "sentinel-1" if name == "sentinel-1" else None)
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    out[name] = {"ms": 1000 * statistics.median(times), "md5": hashlib.md5(result).hexdigest()}
print(json.dumps(out))
"""


def run_tree(tree: Path, model: Path, repeats: int, stage: str) -> dict:
    names = EXAMPLES if stage == "image" else ["sentinel-2"]
    examples = json.dumps({k: str(EXAMPLES[k]) for k in names})
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(repeats), examples, stage],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append", help="a checkout (default: this one)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--stage", choices=["image", "vision", "answer"], default="image")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in (args.tree or [REPO])]
    model = REPO / "skyeye" / "bundled" / "skyeye-tiny"  # one processor config for every tree
    rounds: dict[str, list[dict]] = {str(t): [] for t in trees}
    for r in range(args.rounds):
        for tree in trees if r % 2 == 0 else trees[::-1]:
            rounds[str(tree)].append(run_tree(tree, model, args.repeats, args.stage))
            print(tree, rounds[str(tree)][-1], flush=True)
    first = str(trees[0])
    result: dict = {}
    for tree, runs in rounds.items():
        result[tree] = {
            name: {
                "ms": round(statistics.median(run[name]["ms"] for run in runs), 2),
                "ratio_to_first_tree": round(
                    statistics.median(run[name]["ms"] for run in runs)
                    / statistics.median(run[name]["ms"] for run in rounds[first]),
                    3,
                ),
                "same_output_as_first_tree": runs[0][name]["md5"] == rounds[first][0][name]["md5"],
            }
            for name in runs[0]
        }
    print(json.dumps(result, indent=2))
    if args.json is not None:
        sys.path.insert(0, str(REPO))
        from skyeye.atomic import write_text

        write_text(args.json, json.dumps(result, indent=2))  # never half-written
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
