"""python -m finetune.train end to end on the tiny model; bad input; merge gives identical logits."""

from __future__ import annotations

import json

import pytest
import torch
from ft_helpers import FIXTURES, GOLDEN, write_recipe
from safetensors.torch import load_file

from finetune import merge, train
from skyeye.data.dataset import InstructionDataset, SkyEyeCollator
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.processing.processor import SkyEyeProcessor


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llm_dir):
    folder = tmp_path_factory.mktemp("run")
    path = write_recipe(
        folder,
        tiny_llm_dir,
        train={"max_steps": 12, "save_every": 6, "eval_every": 6},
        data={"eval_files": [str(GOLDEN / "earthmind-refcoco.jsonl")]},
    )
    assert train.main(["--recipe", str(path)]) == 0
    return folder / "run"


def _batch(model_dir):
    processor = SkyEyeProcessor.from_pretrained(model_dir)
    ds = InstructionDataset(
        GOLDEN / "terrascope.jsonl", processor, image_root=FIXTURES, mask_size=16
    )
    return SkyEyeCollator(processor.tokenizer.pad_token_id)([ds[0], ds[2]])


def test_run_writes_loadable_model_logs_and_checkpoints(trained):
    lines = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r["kind"] == "train"]
    assert [r["step"] for r in steps] == list(range(1, 13))
    assert all(r["tokens_per_s"] > 0 and r["lr"] >= 0 for r in steps)
    assert sum(r["loss"] for r in steps[-4:]) < sum(r["loss"] for r in steps[:4])
    assert [r["step"] for r in lines if r["kind"] == "eval"] == [6, 12]
    assert (trained / "model" / "adapter" / "adapter_config.json").is_file()
    model = SkyEyeForConditionalGeneration.from_pretrained(trained / "model")
    assert hasattr(model.language_model, "peft_config")
    # The saved folder holds the trained weights: they match the last checkpoint's delta.
    delta = load_file(str(trained / "checkpoints" / "checkpoint-12" / "trainable.safetensors"))
    params = dict(model.named_parameters())
    assert any("lora_A" in n for n in delta) and any(n.startswith("mask_head.") for n in delta)
    for name, value in delta.items():
        assert torch.equal(params[name], value), name


def test_merge_gives_identical_logits(trained, tmp_path):
    assert merge.main(["--model", str(trained / "model"), "--out", str(tmp_path / "merged")]) == 0
    assert not (tmp_path / "merged" / "adapter").exists() and (tmp_path / "merged" / "llm").is_dir()
    batch = _batch(trained / "model")
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "wavelengths")}
    with torch.no_grad():
        base = SkyEyeForConditionalGeneration.from_pretrained(trained / "model")(**inputs).logits
        merged = SkyEyeForConditionalGeneration.from_pretrained(tmp_path / "merged")(
            **inputs
        ).logits
    assert torch.allclose(base, merged, atol=1e-5, rtol=1e-5)
    assert merge.main(["--model", str(trained / "model"), "--out", str(tmp_path / "merged")]) == 2


def test_bad_records_stop_before_training(tmp_path, tiny_llm_dir, capsys):
    path = write_recipe(
        tmp_path,
        tiny_llm_dir,
        data={"train_files": [str(GOLDEN / "terrascope-bench.jsonl")], "on_bad_record": "stop"},
    )
    assert train.main(["--recipe", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        "terrascope-bench:bench:0" in err
        and "missing image" in err
        and "--on_bad_record skip" in err
    )
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_bad_records_skipped_are_counted(tmp_path, tiny_llm_dir):
    path = write_recipe(
        tmp_path,
        tiny_llm_dir,
        train={"max_steps": 1},
        data={"train_files": [str(GOLDEN / "terrascope-bench.jsonl")]},
    )
    assert train.main(["--recipe", str(path)]) == 0
    start = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert start["bad_records"] == 1 and start["bad_by_reason"] == {"missing image": 1}
    assert start["train_records"] == 1


def test_impossible_lora_target_exits_with_the_fix(tmp_path, tiny_llm_dir, capsys):
    path = write_recipe(tmp_path, tiny_llm_dir, lora={"lora_targets": ["query_key_value"]})
    assert train.main(["--recipe", str(path)]) == 2
    assert "lora.lora_targets" in capsys.readouterr().err
