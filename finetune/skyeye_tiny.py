"""`python -m finetune.skyeye_tiny`: train the embedded default model `skyeye-tiny`, one command.

    python -m finetune.skyeye_tiny --recipe finetune/recipes/skyeye-tiny.yaml \
        --shared-data ../shared/data --work runs/skyeye-tiny [--install skyeye/bundled/skyeye-tiny]

Runs, in order, each stage skipped when its output already exists in --work (so an interrupted
run continues; delete --work to start over): prepare (stack band-per-file scenes),
data (instruct_data.from_rasters, then finetune.replay: the base LLM's answers to ordinary
instructions, mixed into stage 2; the recipe's ``objects_data``: instruct_data.objects' scene and
aircraft records, finetune.objects_mix, mixed into stage 2 and the mask stage), vision
(finetune.vision_stage), stage1 and stage2 (finetune.train with bf16 autocast), mask
(finetune.mask_stage), change (instruct_data.change, then finetune.change_stage;
``--permissive-only``: STAR-style pairs only), scene (finetune.scene_stage: the scene head on the
objects data's labelled scenes; not in a permissive-only build), validate
(finetune.validate_skyeye_tiny), install (copy the final model folder and write its card with
skyeye.hub; refused when a held-out number of the model installed there gets worse,
finetune.install_gate, unless --force-install).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from finetune.band_stack import stack_band_files
from finetune.head_stages import cli_options, run_change, run_scene
from finetune.install import gate_passes, install
from finetune.objects_mix import build_objects_mix

logger = logging.getLogger(__name__)

S2_EXAMPLE = "examples/sentinel2_berlin_l1c.tif"
S1_EXAMPLE = "examples/sentinel1_vv_vh.tif"
PACKAGE_DATA = Path(__file__).resolve().parent / "data"
STAGES = (
    "prepare",
    "data",
    "vision",
    "stage1",
    "stage2",
    "mask",
    "change",
    "scene",
    "validate",
    "install",
)


def harmonise_units(data: Path, factors: dict[str, float]) -> int:
    """Multiply the tiles of the named scenes by a factor, once (a marker file records it).

    from_rasters writes tiles in their source units; Sentinel-2 arrays given as 0-1 reflectance
    (eo-learn Slovenia, UKIS) must be x10000 like every Sentinel-2 product, because the image
    processor scales Sentinel-2 bands as `reflectance_10000`: left as they are, those tiles reach
    the tower as black images. Returns the number of tiles rewritten.
    """
    import numpy as np
    import rasterio

    marker = data / "harmonised_units.json"
    if marker.is_file():
        return 0
    count = 0
    for scene, factor in factors.items():
        for tif in sorted((data / "images" / scene).glob("*.tif")):
            with rasterio.open(tif, "r+") as dst:
                dst.write((dst.read().astype(np.float32) * float(factor)).astype(np.float32))
            count += 1
    marker.write_text(yaml.safe_dump({"factors": factors, "tiles": count}))
    return count


def _train_recipe(
    section: dict[str, Any],
    model: Path | str,
    train_files: list[Path],
    out: Path,
    recipe: dict[str, Any],
) -> dict[str, Any]:
    r = {k: dict(v) for k, v in section.items()}
    r.setdefault("model", {}).update(model=str(model), sar_wavelength=recipe["sar_wavelength"])
    r.setdefault("data", {}).update(train_files=[str(f) for f in train_files])
    r.setdefault("train", {}).update(output_dir=str(out), seed=recipe.get("seed", 0))
    return r


def _run_train(recipe_file: Path, out: Path, threads: int) -> None:
    cmd = [sys.executable, "-m", "finetune.train", "--recipe", str(recipe_file)]
    if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
        cmd += ["--resume", "true"]
    # bf16 autocast (accelerate's mixed precision): ~3x faster than float32 on AVX512-BF16 CPUs.
    env = {**os.environ, "ACCELERATE_MIXED_PRECISION": "bf16", "OMP_NUM_THREADS": str(threads)}
    logger.info("running %s", " ".join(cmd))
    subprocess.run(cmd, check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m finetune.skyeye_tiny", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--recipe", type=Path, default=Path("finetune/recipes/skyeye-tiny.yaml"))
    p.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    p.add_argument("--work", type=Path, default=Path("runs/skyeye-tiny"))
    p.add_argument(
        "--install", type=Path, default=None, help="model folder to replace with the result"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per stage (1: on a 2-core machine shared with other jobs, "
        "2 OpenMP threads thrashed: 25 s/step instead of 2.5 s)",
    )
    p.add_argument("--until", choices=STAGES, default="install", help="stop after this stage")
    p.add_argument(
        "--permissive-only",
        action="store_true",
        help="leave research / non-commercial data out (the change stage then trains on the "
        "STAR-style pairs of the permissive rasters alone, without OSCD and AirChange)",
    )
    p.add_argument(
        "--force-install",
        action="store_true",
        help="install even if a held-out number of the installed model gets worse "
        "(finetune.install_gate; the losses are listed in WORK/install_gate.json)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.recipe.is_file():
        print(f"error: recipe {args.recipe} does not exist", file=sys.stderr)
        return 2
    if not args.shared_data.is_dir():
        print(
            f"error: {args.shared_data} is not a folder: pass --shared-data ../shared/data",
            file=sys.stderr,
        )
        return 2
    recipe = yaml.safe_load(args.recipe.read_text())
    work = args.work.resolve()
    data = work / "data"
    stop = STAGES.index(args.until)

    def done(stage: str) -> bool:
        return STAGES.index(stage) > stop

    # 1. prepare: band-per-file scenes -> one GeoTIFF each (the spec's `prepared:` paths)
    raw = work / "raw"
    for name, st in recipe.get("prepare", {}).items():
        if not (raw / f"{name}.tif").is_file():
            stack_band_files(
                args.shared_data / st["folder"],
                st["pattern"],
                list(st["bands"]),
                raw / f"{name}.tif",
                nodata=st.get("nodata"),
            )
    if done("data"):
        return 0
    # 2. data
    if not (data / "train.jsonl").is_file():
        from instruct_data.from_rasters.__main__ import main as from_rasters

        # `prepared:` -> the band stacks above; `package-data:` -> real rasters committed with
        # this package (finetune/data, each folder with its SOURCE.txt)
        spec_text = (
            Path(recipe["data"]["spec"])
            .read_text()
            .replace("prepared:", str(raw) + "/")
            .replace("package-data:", str(PACKAGE_DATA) + "/")
        )
        spec = work / "data_spec.yaml"
        spec.write_text(spec_text)
        rc = from_rasters(
            ["--spec", str(spec), "--root", str(args.shared_data.resolve()), "--out", str(data)]
        )
        if rc:
            return rc
    n = harmonise_units(data, recipe["data"].get("rescale", {}))
    if n:
        logger.info("rescaled %d tiles to x10000 reflectance", n)
    # 2b. replay: the base LLM's own answers to ordinary instructions, mixed into stage 2
    replay = data / "replay.jsonl"
    if "replay" in recipe and not replay.is_file():
        from finetune.replay import main as replay_main

        torch_threads(args.threads)
        opts = cli_options(recipe["replay"])
        rc = replay_main(["--out", str(replay), *opts])
        if rc:
            return rc
    # 2c. object and scene records (instruct_data.objects), mixed into stage 2 and the mask stage
    extra: list[Path] = []
    if "objects_data" in recipe:
        try:
            extra.append(
                build_objects_mix(
                    recipe["objects_data"],
                    args.shared_data.resolve(),
                    data,
                    permissive_only=args.permissive_only,
                    seed=recipe.get("seed", 0),
                )
            )
        except (OSError, ValueError) as err:
            print(f"error: objects data: {err}", file=sys.stderr)
            return 2
    if done("vision"):
        return 0
    # 3. vision stage
    vision = work / "vision"
    start = str(recipe["start_model"])
    if start == "build":
        # The seeded, untrained build (never the installed folder, which this recipe replaces).
        start = str(work / "base")
        if not (work / "base" / "config.json").is_file():
            subprocess.run(
                [
                    sys.executable,
                    "scripts/build_skyeye_tiny.py",
                    "--out",
                    start,
                    "--seed",
                    str(recipe.get("seed", 0)),
                ],
                check=True,
            )
    if not (vision / "model.safetensors").is_file():
        from finetune.vision_stage import main as vision_stage

        torch_threads(args.threads)
        opts = cli_options(recipe.get("vision_stage", {}))
        rc = vision_stage(
            [
                "--data",
                str(data / "train.jsonl"),
                "--model",
                start,
                "--out",
                str(vision),
                "--sar-wavelength",
                str(recipe["sar_wavelength"]),
                "--seed",
                str(recipe.get("seed", 0)),
                *opts,
            ]
        )
        if rc:
            return rc
    # 4-5. stage 1 and stage 2 (finetune.train)
    previous: Path = vision
    for stage in ("stage1", "stage2"):
        if done(stage):
            return 0
        out = work / stage
        if not (out / "model" / "config.json").is_file():
            files = [data / "train.jsonl"]
            if stage == "stage2":
                files += extra + ([replay] if "replay" in recipe else [])
            r = _train_recipe(recipe[stage], previous, files, out, recipe)
            recipe_file = work / f"{stage}.yaml"
            recipe_file.write_text(yaml.safe_dump(r, sort_keys=False))
            _run_train(recipe_file, out, args.threads)
        previous = out / "model"
    if done("mask"):
        return 0
    # 6. more mask-head training on cached [SEG] states (LLM and tower frozen)
    if "mask_stage" in recipe:
        mask = work / "mask" / "model"
        if not (mask / "config.json").is_file():
            # A fresh process, like stages 1 and 2: the hires decoder's new layers are drawn from
            # torch's global generator, whose state in this driver depended on which stages ran
            # before (a resumed recipe drew a different head than a run from scratch).
            opts = cli_options(recipe["mask_stage"])
            cmd = [
                sys.executable,
                "-m",
                "finetune.mask_stage",
                "--model",
                str(previous),
                "--data",
                str(data / "train.jsonl"),
                *[str(f) for f in extra],
                "--out",
                str(mask),
                "--seed",
                str(recipe.get("seed", 0)),
                *opts,
            ]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            if subprocess.run(cmd, env=env).returncode:
                return 2
        previous = mask
    if done("change"):
        return 0
    # 7. the change decoder on cached change [SEG] states (LLM, tower and mask head frozen)
    if "change_stage" in recipe:
        rc = run_change(recipe, args, work, previous)
        if rc:
            return rc
        previous = work / "change" / "model"
    if done("scene"):
        return 0
    # 8. the scene head on the objects data's labelled scenes (everything else frozen). The
    # scene sets that train it (AID) are research-only: a permissive-only build has none.
    if "scene_stage" in recipe and not args.permissive_only:
        rc = run_scene(recipe, args, work, previous)
        if rc:
            return rc
        previous = work / "scene" / "model"
    if done("validate"):
        return 0
    # 9. validate
    report = work / "validation.json"
    if not report.is_file():
        from finetune.validate_skyeye_tiny import main as validate

        v = recipe.get("validation", {})
        rc = validate(
            [
                "--model",
                str(previous),
                "--val",
                str(data / "val.jsonl"),
                "--train",
                str(data / "train.jsonl"),
                "--out",
                str(report),
                "--max-tiles",
                str(v.get("max_tiles", 400)),
                "--ndwi-threshold",
                str(v.get("ndwi_threshold", 0.0)),
                "--vv-db-threshold",
                str(v.get("vv_db_threshold", -15.0)),
                "--threads",
                str(args.threads),
                "--s2-scene",
                S2_EXAMPLE,
                "--s1-scene",
                S1_EXAMPLE,
                "--overlay",
                str(work / "skyeye_tiny_water_s2.png"),
            ]
        )
        if rc:
            return rc
    if done("install") or args.install is None:
        return 0
    # 10. install, only if no held-out number of the installed model gets worse
    change_report = work / "change" / "change_evaluation.json"
    reports = [report, *([change_report] if change_report.is_file() else [])]
    if not gate_passes(args.install, reports, work / "install_gate.json", args.force_install):
        print(
            f"error: not installed: the new model ({previous}) does worse than {args.install} on "
            f"held-out numbers (listed in {work / 'install_gate.json'}); pass --force-install "
            "to replace it anyway",
            file=sys.stderr,
        )
        return 2
    install(previous, args.install, reports, args.recipe, permissive_only=args.permissive_only)
    return 0


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


if __name__ == "__main__":
    sys.exit(main())
