"""Per-window cost of a two-date scene with clouds from the mask decoder (the baseline) against
clouds from the spectral test (issue 28), in one run, on the same windows of the bench's tile pair.

    OMP_NUM_THREADS=1 python bench/pair_clouds.py [--size 2745] [--windows 8] [--model skyeye-tiny]

The tile and its changed copy are `bench/scene_pair.py`'s (`bench/.data/s2_tile_N.tif` and
`_changed.tif`: a 9-sided polygon over land filled with the tile's own water pixels). Windows
(the scene's default layout, 512 px, overlap 64) are the ones whose pixels differ most between
the dates and then the first of the rest, half and half (most windows of a scene do not change). Each batch of pairs (4, as `--batch 8`
gives a pair run) goes through `ChangeWindowRunner` twice, in alternating order:

* baseline: the classes and "cloud", "cloud shadow" asked of the mask decoder, clouds on every
  window (`always`), as before issue 28;
* spectral: the classes only, drawn only where the window's change reaches 0.5; clouds by
  `skyeye.grounding.clouds.pair_clouds` on each date's window pixels.

Reported per window: process CPU seconds (prepare + answer, one torch thread), the share of
pixels left out for cloud on either date by each method, and how many windows drew classes.
Printed as JSON; the load average is read before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / ".data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2745)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--model", default="skyeye-tiny")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from skyeye.chat.counting import DEFAULT_MASK_CLASSES
    from skyeye.chat.transitions import CLOUD_PHRASES, TRANSITION_CLASSES
    from skyeye.scene.change_infer import ChangeWindowRunner
    from skyeye.scene.infer import open_session
    from skyeye.scene.pair import PairSource
    from skyeye.scene.runner import scene_scaling
    from skyeye.scene.windows import window_layout

    before, after = DATA / f"s2_tile_{args.size}.tif", DATA / f"s2_tile_{args.size}_changed.tif"
    if not before.is_file() or not after.is_file():
        print(f"{before} or {after} missing: run bench/scene_pair.py --size {args.size} first")
        return 2
    load = [os.getloadavg()[0]]
    session = open_session(args.model)
    known = session.settings.mask_classes or DEFAULT_MASK_CLASSES
    decoded = [c for c in TRANSITION_CLASSES.values() if c in known]
    clouds = [c for c in CLOUD_PHRASES if c in known]
    dates, prompt = ["2020-05-01", "2020-06-01"], "What changed?"
    baseline = ChangeWindowRunner(session, prompt, dates, decoded + clouds, clouds)
    spectral = ChangeWindowRunner(session, prompt, dates, decoded, spectral_clouds=True)
    with PairSource(before, after, dates=dates) as pair:
        proc = session.processor.image_processor
        scalings = (scene_scaling(proc, pair.before), scene_scaling(proc, pair.after))
        windows = window_layout(pair.grid.height, pair.grid.width, 512, 64)
        diff = {}
        for w in windows:  # one window's pair in memory at a time (13 MB a date)
            b, a = pair.read(w.row, w.col, w.height, w.width)
            diff[w.index] = float(np.nanmean(np.abs(b - a)))
        ranked = sorted(diff, key=diff.get, reverse=True)  # type: ignore[arg-type]
        half = args.windows // 2
        picked = ranked[:half] + [i for i in sorted(diff) if i not in ranked[:half]][:half]

        def dated(i: int):
            w = windows[i]
            b, a = pair.read(w.row, w.col, w.height, w.width)
            return (pair.before.image(b, w.row, w.col), pair.after.image(a, w.row, w.col))

        cpu = {"baseline": 0.0, "spectral": 0.0}
        batches: list[dict] = []
        left = {"baseline": [], "spectral": []}
        drew = {"baseline": 0, "spectral": 0}
        n_cloud = len(clouds)
        for k in range(0, len(picked), 4):
            pairs = [dated(i) for i in picked[k : k + 4]]
            order = [("baseline", baseline), ("spectral", spectral)]
            batch: dict = {"windows": picked[k : k + 4]}
            for name, runner in order if (k // 4) % 2 == 0 else order[::-1]:
                started = time.process_time()
                answers = runner.answer(runner.prepare(pairs, scalings))
                cpu[name] += time.process_time() - started
                batch[f"{name}_cpu_s"] = round(time.process_time() - started, 3)
                for (b, _a), ans in zip(pairs, answers, strict=True):
                    h, w = b.data.shape[1:]
                    n = len(runner.classes)
                    drew[name] += bool(ans.arrays["classes_drawn"][: len(decoded)].any())
                    if name == "spectral":
                        cl = np.unpackbits(ans.arrays["clouds"])[: 2 * h * w].reshape(2, h, w)
                    else:
                        bits = np.unpackbits(ans.arrays["classes"])[: 2 * n * h * w]
                        cl = bits.reshape(2, n, h, w)[:, n - n_cloud :].any(axis=1)
                    left[name].append(float(cl.any(axis=0).mean()))
            batch["with_change"] = sum(bool(a.prob.max() >= 0.5) for a in answers)
            batches.append(batch)
    load.append(os.getloadavg()[0])
    n = len(picked)
    result = {
        "tile": before.name,
        "windows": picked,
        "model": args.model,
        "threads": args.threads,
        "cpu_s_per_window": {k: round(v / n, 3) for k, v in cpu.items()},
        "ratio_spectral_over_baseline": round(cpu["spectral"] / cpu["baseline"], 3),
        "cloud_left_out_share_mean": {k: round(float(np.mean(v)), 4) for k, v in left.items()},
        "windows_drawing_classes": drew,
        "batches": batches,
        "load_avg_1min": load,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
