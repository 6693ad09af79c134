"""`python -m finetune.scene_stage` on the tiny model: the scene head learns to name three kinds of
image it is shown, skips and counts records it cannot use, reaches the same weights when rerun,
and leaves every other weight of the model as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from skyeye_testing import make_tiny_model

from finetune.scene_stage import main as scene_stage

#: Class -> mean RGB of its images: the tiny random tower tells these apart.
COLOURS = {"lake": (20, 40, 120), "forest": (30, 110, 40), "city": (200, 200, 190)}


@pytest.fixture
def start(tmp_path, tiny_llm_dir) -> Path:
    model, processor = make_tiny_model(tiny_llm_dir)
    model.save_pretrained(tmp_path / "start", processor=processor)
    return tmp_path / "start"


def _write_records(folder: Path, per_class: int = 12) -> Path:
    """Records of 12 images per class; the city images lie in the shared folder
    (``meta.image_root`` "shared"), the others beside the file."""
    rng = np.random.default_rng(0)
    for sub in ("data/images", "shared/images"):
        (folder / sub).mkdir(parents=True)
    classes = list(COLOURS)
    lines = []
    for name, rgb in COLOURS.items():
        root = "shared" if name == "city" else "out"
        for k in range(per_class):
            pixels = np.clip(rng.normal(rgb, 25, size=(16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(
                folder / ("shared" if root == "shared" else "data") / "images" / f"{name}{k}.png"
            )
            record = {
                "images": [{"path": f"images/{name}{k}.png", "modality": "optical"}],
                "turns": [],
                "meta": {"dataset": "toy", "class": name, "classes": classes, "image_root": root},
            }
            lines.append(json.dumps(record))
            if k == 0:  # the same image asked again: one pair
                lines.append(json.dumps({**record, "turns": [{"role": "user", "text": "?"}]}))
    lines.append("{not json")
    lines.append(json.dumps({"images": "x.png", "meta": "lake"}))  # the wrong types
    lines.append(json.dumps({"images": [], "meta": {"dataset": "toy"}}))
    lines.append(
        json.dumps({"images": [{"path": "x.png"}], "meta": {"class": "sea", "classes": classes}})
    )
    lines.append(
        json.dumps(
            {
                "images": [{"path": "images/missing.png"}],
                "meta": {"dataset": "toy", "class": "lake", "classes": classes},
            }
        )
    )
    path = folder / "data" / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _args(start: Path, data: Path, out: Path) -> list[str]:
    return [
        "--model", str(start), "--data", str(data), "--out", str(out), "--steps", "200",
        "--shared-data", str(data.parent.parent / "shared"),
        "--batch-size", "16", "--lr", "1e-2", "--dim", "8", "--val-share", "0.25",
        "--save-dtype", "float32",
    ]  # fmt: skip


def test_the_head_learns_to_name_what_it_sees(tmp_path, start):
    data = _write_records(tmp_path)
    out = tmp_path / "scene" / "model"
    assert scene_stage(_args(start, data, out)) == 0
    report = json.loads((out.parent / "scene_stage_log.json").read_text())
    assert report["images"] == {"train": 27, "val": 9}
    assert report["skipped"] == {
        "not a record": 2,
        "not a scene record (no meta.class and meta.classes)": 1,
        "class not in its class list": 1,
        "unreadable image (ImagePathError)": 1,
    }
    assert report["val_accuracy"] >= 8 / 9
    config = json.loads((out / "config.json").read_text())
    assert config["scene_head"] is True and config["scene_head_dim"] == 8
    # "Mainly X?" ranks X among the trained names, cut where the kept-out images say.
    assert config["scene_names"] == sorted(COLOURS) and config["scene_top_k"] == 1
    assert report["presence_top_k"] == {"k": 1, "accuracy": 1.0}
    old, new = (
        load_file(str(start / "model.safetensors")),
        load_file(str(out / "model.safetensors")),
    )
    assert {k.split(".")[0] for k in set(new) - set(old)} == {"scene_head"}
    assert all(torch.equal(old[k], new[k]) for k in old)

    # Rerun whole (the stage keeps no checkpoints): the same final weights.
    again = tmp_path / "again" / "model"
    assert scene_stage(_args(start, data, again)) == 0
    rerun = load_file(str(again / "model.safetensors"))
    assert all(torch.equal(new[k], rerun[k]) for k in new)


def test_a_file_without_scene_records_is_one_line_exit_2(tmp_path, start, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text(json.dumps({"images": [{"path": "a.png"}], "meta": {}}) + "\n")
    assert scene_stage(_args(start, data, tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip()
    assert "no one-image record with meta.class" in err and len(err.splitlines()) == 1
    assert scene_stage([*_args(start, data, tmp_path / "out"), "--steps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --steps must be positive"
    assert not (tmp_path / "out").exists()


def test_the_recipe_runs_the_scene_stage_after_change_with_its_options(tmp_path, capsys):
    import argparse

    import yaml

    from finetune import skyeye_tiny
    from finetune.head_stages import run_scene
    from finetune.scene_stage import _parser

    stages = skyeye_tiny.STAGES
    assert stages.index("change") < stages.index("scene") < stages.index("validate")
    recipe = yaml.safe_load(
        (skyeye_tiny.PACKAGE_DATA.parent / "recipes/skyeye-tiny.yaml").read_text()
    )
    options = skyeye_tiny.cli_options(recipe["scene_stage"])
    parsed = _parser().parse_args(["--model", "m", "--data", "d", "--out", "o", *options])
    assert parsed.steps > 0 and parsed.dim > 0
    # Without the objects data there is nothing to learn scene names from: one line, exit 2.
    args = argparse.Namespace(threads=1)
    assert run_scene(recipe, args, tmp_path, tmp_path / "previous") == 2
    err = capsys.readouterr().err.strip()
    assert "objects/train.jsonl" in err and "objects_data" in err and len(err.splitlines()) == 1
