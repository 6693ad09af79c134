"""The recipe's late stages, each a fresh process on the previous stage's model folder and each
skipped when its output exists: the change decoder (`finetune.change_stage`, on the pairs of
`instruct_data.change`) and the scene head (`finetune.scene_stage`, on the objects data's
labelled scenes). `python -m finetune.skyeye_tiny` runs them after the mask stage.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def cli_options(section: dict[str, Any]) -> list[str]:
    """A recipe section as command-line options: ``key: value`` -> ``--key=value``, and a boolean
    as the flag alone (``--key`` / ``--no-key``, argparse's BooleanOptionalAction)."""
    opts = []
    for key, value in section.items():
        flag = key.replace("_", "-")
        if isinstance(value, bool):
            opts.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            opts.append(f"--{flag}={value}")
    return opts


def change_data_args(
    recipe: dict[str, Any], shared: Path, out: Path, *, permissive: bool
) -> list[str]:
    """``python -m instruct_data.change`` arguments of the recipe's ``change_data`` section
    (``permissive``: research / non-commercial sources left out, STAR-style pairs only)."""
    section = recipe.get("change_data", {})
    args = ["--data", str(shared), "--out", str(out), "--seed", str(recipe.get("seed", 0))]
    if section.get("sources"):
        args += ["--sources", *[str(s) for s in section["sources"]]]
    return args + (["--permissive-only"] if permissive else [])


def run_change(recipe: dict[str, Any], args: argparse.Namespace, work: Path, previous: Path) -> int:
    """Change data (instruct_data.change) and the change stage, each skipped when done."""
    data = work / "change_data"
    if not (data / "train.jsonl").is_file():
        from instruct_data.change.__main__ import main as build_change

        shared = args.shared_data.resolve()
        rc = build_change(change_data_args(recipe, shared, data, permissive=args.permissive_only))
        if rc:
            return rc
    out = work / "change" / "model"
    if (out / "config.json").is_file():
        return 0
    # A fresh process, as the mask stage: the decoder's new layers come from a seeded generator.
    cmd = [sys.executable, "-m", "finetune.change_stage", "--model", str(previous)]
    cmd += ["--data", str(data / "train.jsonl"), "--val", str(data / "val.jsonl")]
    cmd += ["--out", str(out), "--seed", str(recipe.get("seed", 0))]
    cmd += cli_options(recipe["change_stage"])
    return _run(cmd, args.threads)


def run_scene(recipe: dict[str, Any], args: argparse.Namespace, work: Path, previous: Path) -> int:
    """The scene stage on every training record of the objects data
    (``DATA/objects/train.jsonl``: all the scene sets' training images, not the capped sample
    mixed into stage 2), skipped when done."""
    out = work / "scene" / "model"
    if (out / "config.json").is_file():
        return 0
    objects = work / "data" / "objects" / "train.jsonl"
    if not objects.is_file():
        print(
            f"error: the scene stage needs {objects}: give the recipe an objects_data section "
            "(the labelled scene sets) or drop its scene_stage section",
            file=sys.stderr,
        )
        return 2
    cmd = [sys.executable, "-m", "finetune.scene_stage", "--model", str(previous)]
    cmd += ["--data", str(objects), "--shared-data", str(args.shared_data.resolve())]
    cmd += ["--out", str(out), "--seed", str(recipe.get("seed", 0))]
    cmd += cli_options(recipe["scene_stage"])
    return _run(cmd, args.threads)


def _run(cmd: list[str], threads: int) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return 2 if subprocess.run(cmd, env=env).returncode else 0
