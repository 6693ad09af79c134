"""`python -m finetune.mask_stage` on the tiny model: the mask head alone learns from cached
[SEG] states, and --classes keeps only the records about those classes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from skyeye_testing import make_tiny_model

from finetune.mask_stage import main as mask_stage
from instruct_data.from_rasters.__main__ import main as from_rasters

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "from_rasters"


def test_mask_stage_trains_only_the_head_on_the_chosen_class(tmp_path, tiny_llm_dir):
    data = tmp_path / "data"
    assert from_rasters(["--spec", str(FIX / "spec.yaml"), "--out", str(data)]) == 0
    seg = [
        json.loads(line)
        for line in (data / "train.jsonl").open()
        if json.loads(line)["meta"]["gen_task"] == "segmentation"
    ]
    assert {c for r in seg for c in r["meta"]["classes"]} > {"water"}  # other classes too
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    processor.image_processor.sar_wavelength = 5.405  # the fixture has a SAR scene too
    model.save_pretrained(tmp_path / "start", processor=processor)
    out = tmp_path / "mask" / "model"
    args = ["--model", str(tmp_path / "start"), "--data", str(data / "train.jsonl")]
    args += ["--out", str(out), "--steps", "3", "--batch-size", "2", "--save-dtype", "float32"]
    assert mask_stage([*args, "--classes", "water"]) == 0
    kept = [json.loads(line) for line in (out.parent / "seg_records.jsonl").open()]
    assert kept and all(r["meta"]["classes"] == ["water"] for r in kept)
    log = json.loads((out.parent / "mask_stage_log.json").read_text())
    assert log["masks"] == len(kept)
    # The chat counts and measures only what the decoder trained on: the config says so.
    assert json.loads((out / "config.json").read_text())["mask_classes"] == ["water"]

    from safetensors.torch import load_file

    before = load_file(str(tmp_path / "start" / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"mask_head"}  # the tower, projector and token rows are untouched


def test_mask_stage_turns_the_light_head_into_hires(tmp_path, tiny_llm_dir):
    data = tmp_path / "data"
    assert from_rasters(["--spec", str(FIX / "spec.yaml"), "--out", str(data)]) == 0
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    processor.image_processor.sar_wavelength = 5.405
    model.save_pretrained(tmp_path / "start", processor=processor)
    out = tmp_path / "mask" / "model"
    args = ["--model", str(tmp_path / "start"), "--data", str(data / "train.jsonl")]
    args += ["--out", str(out), "--steps", "2", "--batch-size", "3", "--save-dtype", "float32"]
    hires = ["--decoder", "hires", "--hires-size", "40", "--class-raster-weight", "4"]
    hires += ["--hires-ratios", "3", "--hires-indices"]
    assert mask_stage([*args, *hires]) == 0
    log = json.loads((out.parent / "mask_stage_log.json").read_text())
    assert 0 < log["class_raster_masks"] < log["masks"]  # the fixture's land-cover raster masks
    config = json.loads((out / "config.json").read_text())
    assert config["mask_decoder"] == "hires"
    assert config["mask_hires_ratios"] == 3
    assert config["mask_hires_indices"] is True
    assert json.loads((out / "preprocessor_config.json").read_text())["hires_size"] == 40

    from safetensors.torch import load_file

    before = load_file(str(tmp_path / "start" / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    assert set(before) < set(after)
    assert {k.split(".")[0] for k in set(after) - set(before)} == {"mask_head"}
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"mask_head"}
    from skyeye.modeling.model import SkyEyeForConditionalGeneration

    loaded = SkyEyeForConditionalGeneration.from_pretrained(out)
    assert type(loaded.mask_head).__name__ == "HiResMaskHead"
    assert loaded.mask_head.band_ratios.out_dim == 3


def test_weighted_draws_follow_the_weights_and_unweighted_ones_are_unchanged():
    import random

    from finetune.mask_stage import draw_batch

    # The unweighted draw is the stage's original one: runs without weights reproduce old weights.
    old = random.Random(7)
    assert draw_batch(random.Random(7), 10, 5) == [old.randrange(10) for _ in range(5)]
    # Masks drawn 9x as often come up about 9x as often (class-raster masks drawn by people).
    picks = draw_batch(random.Random(0), 4, 4000, [9.0, 1.0, 1.0, 1.0])
    share = picks.count(0) / len(picks)
    assert 0.7 < share < 0.8  # 9 / 12 = 0.75


def test_class_raster_weight_must_be_positive(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text("")
    args = ["--model", str(tmp_path), "--data", str(data), "--out", str(tmp_path / "out")]
    assert mask_stage([*args, "--class-raster-weight", "0"]) == 2
    assert "--class-raster-weight must be positive" in capsys.readouterr().err
    assert mask_stage([*args, "--hires-ratios", "-1"]) == 2
    assert "--hires-ratios must be 0 (none) or positive" in capsys.readouterr().err


def test_hires_mask_stage_gives_the_same_weights_whatever_came_before(tmp_path, tiny_llm_dir):
    """The hires decoder's new layers are drawn after seeding: two runs of the same command give
    the same bytes even when torch's global generator was used differently before them (as
    happens between two processes: two copies of the recipe's mask stage differed before)."""
    data = tmp_path / "data"
    assert from_rasters(["--spec", str(FIX / "spec.yaml"), "--out", str(data)]) == 0
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    processor.image_processor.sar_wavelength = 5.405
    model.save_pretrained(tmp_path / "start", processor=processor)
    outputs = []
    for run, draws in enumerate((0, 7)):
        torch.rand(draws)  # another history of the global generator
        out = tmp_path / f"run{run}" / "mask" / "model"
        args = ["--model", str(tmp_path / "start"), "--data", str(data / "train.jsonl")]
        args += ["--out", str(out), "--steps", "3", "--batch-size", "3"]
        args += ["--decoder", "hires", "--hires-size", "40", "--hires-ratios", "3"]
        assert mask_stage([*args, "--hires-indices", "--save-dtype", "float32"]) == 0
        outputs.append((out / "model.safetensors").read_bytes())
    assert outputs[0] == outputs[1]


def test_mask_stage_reads_several_files_of_one_folder(tmp_path, tiny_llm_dir):
    """The recipe's objects records (another file beside train.jsonl) join the mask stage; their
    classes join the config's list; files in different folders are refused in one line."""
    data = tmp_path / "data"
    assert from_rasters(["--spec", str(FIX / "spec.yaml"), "--out", str(data)]) == 0
    lines = (data / "train.jsonl").read_text().splitlines(keepends=True)
    seg = [line for line in lines if "[SEG]" in line]
    extra = json.loads(seg[0])
    extra["id"] = "extra:aircraft"
    for turn in extra["turns"]:
        if turn["role"] == "assistant":
            turn["text"] = "<p>Aircraft</p> [SEG]"
    (data / "objects.jsonl").write_text(json.dumps(extra) + "\n")
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    processor.image_processor.sar_wavelength = 5.405
    model.save_pretrained(tmp_path / "start", processor=processor)
    out = tmp_path / "mask" / "model"
    args = ["--model", str(tmp_path / "start"), "--out", str(out), "--steps", "1"]
    args += ["--batch-size", "2", "--save-dtype", "float32"]
    files = [str(data / "train.jsonl"), str(data / "objects.jsonl")]
    assert mask_stage([*args, "--data", *files]) == 0
    kept = [json.loads(line)["id"] for line in (out.parent / "seg_records.jsonl").open()]
    assert len(kept) == len(seg) + 1 and "extra:aircraft" in kept
    classes = json.loads((out / "config.json").read_text())["mask_classes"]
    assert "aircraft" in classes and "water" in classes and classes == sorted(classes)

    # The cap is per file: the second file's record joins the first file's sample of one.
    capped = tmp_path / "capped" / "model"
    capped_args = [*args[:2], "--out", str(capped), *args[4:], "--max-records", "1"]
    assert mask_stage([*capped_args, "--data", *files]) == 0
    kept = [json.loads(line)["id"] for line in (capped.parent / "seg_records.jsonl").open()]
    assert (
        len(kept) == 2
        and kept[1] == "extra:aircraft"
        and kept[0] in {json.loads(line)["id"] for line in seg}
    )
    assert "water" in json.loads((capped / "config.json").read_text())["mask_classes"]

    elsewhere = tmp_path / "other" / "objects.jsonl"
    elsewhere.parent.mkdir()
    elsewhere.write_text(json.dumps(extra) + "\n")
    assert mask_stage([*args, "--data", str(data / "train.jsonl"), str(elsewhere)]) == 2
