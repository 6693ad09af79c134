"""Training-step benchmark: seconds per step and peak RSS at the skyeye-tiny recipe's batch size.

    .venv/bin/python bench/train_step.py [--recipe finetune/recipes/skyeye-tiny.yaml]
        [--data runs/skyeye-tiny/data/train.jsonl] [--model skyeye-tiny] [--steps 6] [--json OUT]

Runs `python -m finetune.train` twice, side by side in one invocation, with the recipe's stage-2
settings (LoRA + projector + mask head, its batch size) on the from_rasters training data:
once with bf16 autocast (what the recipe uses) and once in float32 (the baseline). Each run is a
fresh process, so its peak RSS (the child's own ru_maxrss, from wait4) is that run's own. Seconds per step are
the median of the steps after the first (the first includes lazy initialisation); `finetune.train`
logs them per step in OUTPUT/log.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run_once(recipe: dict, mixed: str, threads: int, workdir: Path) -> dict:
    """One `finetune.train` process; returns its step times and peak RSS."""
    out = workdir / f"run-{mixed}"
    recipe = json.loads(json.dumps(recipe))
    recipe["train"]["output_dir"] = str(out)
    path = workdir / f"recipe-{mixed}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "ACCELERATE_MIXED_PRECISION": mixed, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    errfile = workdir / f"stderr-{mixed}.txt"
    with open(errfile, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finetune.train", "--recipe", str(path)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        # wait4 gives this child's own resource usage (its peak RSS), not a running maximum.
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"finetune.train failed ({mixed}):\n{errfile.read_text()[-3000:]}")
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    times = [s["s_per_step"] for s in steps if s.get("kind") == "train"]
    tokens = [s["tokens_per_s"] * s["s_per_step"] for s in steps if s.get("kind") == "train"]
    return {
        "mixed_precision": mixed,
        "steps": len(times),
        "s_per_step_median": statistics.median(times[1:] or times),
        "s_first_step": times[0],
        "tokens_per_step_mean": statistics.mean(tokens),
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--recipe", type=Path, default=REPO / "finetune/recipes/skyeye-tiny.yaml")
    p.add_argument("--data", type=Path, default=REPO / "runs/skyeye-tiny/data/train.jsonl")
    p.add_argument("--model", default="skyeye-tiny")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if not args.data.is_file():
        print(
            f"error: {args.data} does not exist: generate it with python -m finetune.skyeye_tiny --until data",
            file=sys.stderr,
        )
        return 2
    full = yaml.safe_load(args.recipe.read_text())
    stage2 = {k: dict(v) for k, v in full["stage2"].items()}
    stage2.setdefault("model", {}).update(model=args.model, sar_wavelength=full["sar_wavelength"])
    stage2.setdefault("data", {}).update(train_files=[str(args.data.resolve())])
    stage2["train"].update(max_steps=args.steps, save_every=0, save_dtype=None)
    results = []
    with tempfile.TemporaryDirectory(prefix="skyeye-train-bench-") as tmp:
        for mixed in ("bf16", "no"):
            results.append(run_once(stage2, mixed, args.threads, Path(tmp)))
    bf16, fp32 = results
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "batch_size": stage2["train"]["batch_size"],
        "results": results,
        "speedup_bf16_vs_fp32": fp32["s_per_step_median"] / bf16["s_per_step_median"],
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
