"""finetune.loop evaluation: every process runs the same forwards, even over a batch of bad records.

With ZeRO-3 / FSDP each forward gathers parameters with collectives, so a process that skipped a
forward would leave the others waiting forever. A batch whose records all fail to load is
simulated here in one process (corrupt image files that pass the up-front existence check).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ft_helpers import FIXTURES, GOLDEN, write_recipe

from finetune.args import load_recipe
from finetune.model_setup import load_or_build


@pytest.fixture
def loop_with_bad_eval_batch(tmp_path: Path, tiny_llm_dir: Path):
    from accelerate import Accelerator

    from finetune.loop import Loop
    from skyeye.data.dataset import InstructionDataset, SkyEyeCollator

    recipe = load_recipe(write_recipe(tmp_path, tiny_llm_dir), {})
    model, processor = load_or_build(recipe)
    good = [json.loads(line) for line in (GOLDEN / "llava.jsonl").read_text().splitlines()[:2]]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    bad = [
        {**good[0], "id": f"bad-{k}", "images": [{"path": str(corrupt), "modality": "optical"}]}
        for k in range(2)
    ]
    for record in good:  # absolute paths: the records now live in tmp_path
        for image in record["images"]:
            image["path"] = str(FIXTURES / image["path"])
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in good + bad))  # batches: good, all bad
    eval_ds = InstructionDataset(
        path, processor, image_root=tmp_path, mask_size=16, allow_absolute_paths=True
    )
    assert eval_ds.check(2) is None and eval_ds[2] is None  # passes the check, fails to load
    acc = Accelerator(cpu=True)
    loop = Loop(
        recipe, acc, model, None, None, eval_ds, eval_ds,
        SkyEyeCollator(processor.tokenizer.pad_token_id), None,
    )  # fmt: skip
    return loop


def test_eval_runs_a_forward_for_an_all_bad_batch(loop_with_bad_eval_batch):
    loop = loop_with_bad_eval_batch
    calls = []
    handle = loop.model.register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        metrics = loop.evaluate()
    finally:
        handle.remove()
    # Two eval batches on this process -> two forwards (the collective pattern of every rank).
    assert len(calls) == 2
    # Only the good records count.
    assert metrics["eval_examples"] == 2 and metrics["eval_loss"] > 0
