"""The recipe's install stage: a retrained model replaces the installed one only when none of the
installed model's held-out numbers gets worse (`finetune.install_gate`), and the replacement is
one whole folder with its card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from finetune.install import gate_passes, install
from finetune.install_gate import installed_numbers, losses
from skyeye.hub.card import Evaluation

VALIDATION = {
    "tasks": {
        "presence": {"metrics": {"accuracy": 0.77, "baseline_majority_accuracy": 0.64, "n": 40}},
        "proportion": {"metrics": {"mae_pts": 13.0, "baseline_mae_pts": 20.6, "unparseable": 0.0}},
    }
}


def _report(path: Path, accuracy: float, mae: float, baseline: float = 0.64) -> Path:
    report = json.loads(json.dumps(VALIDATION))
    report["tasks"]["presence"]["metrics"].update(
        accuracy=accuracy, baseline_majority_accuracy=baseline
    )
    report["tasks"]["proportion"]["metrics"]["mae_pts"] = mae
    path.write_text(json.dumps(report))
    return path


def test_losses_count_only_the_models_own_numbers_in_their_direction():
    installed = {
        ("presence", "accuracy"): 0.77,
        ("presence", "baseline_majority_accuracy"): 0.64,
        ("proportion", "mae_pts"): 13.0,
        ("count", "within_1"): 0.43,
    }
    better = [
        Evaluation("presence", "x", [("accuracy", 0.80), ("baseline_majority_accuracy", 0.5)]),
        Evaluation("proportion", "x", [("mae_pts", 12.0)]),
        Evaluation("count", "x", [("within_1", 0.43)]),  # equal is as good
    ]
    assert losses(installed, better) == []
    worse = [
        Evaluation("presence", "x", [("accuracy", 0.76)]),
        Evaluation("proportion", "x", [("mae_pts", 13.5)]),
    ]  # and count's row is missing
    found = {(x.task, x.metric): x.candidate for x in losses(installed, worse)}
    assert found == {
        ("presence", "accuracy"): 0.76,
        ("proportion", "mae_pts"): 13.5,
        ("count", "within_1"): None,
    }


@pytest.fixture
def installed(tiny_model, tmp_path: Path) -> Path:
    """A model folder installed by `install`, with its card's model-index."""
    from skyeye.modeling.checkpoint import save_model

    model, processor = tiny_model
    source = tmp_path / "run" / "model"
    save_model(model, source, processor=processor)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("seed: 0\n")
    target = tmp_path / "bundled" / "tiny"
    target.mkdir(parents=True)
    (target / "stale.txt").write_text("from the model before")
    report = _report(tmp_path / "first.json", accuracy=0.77, mae=13.0)
    install(source, target, [report], recipe)
    return target


def test_install_replaces_the_folder_and_writes_the_card(installed):
    assert not (installed / "stale.txt").exists()  # the old folder's files are gone
    assert (installed / "config.json").is_file()
    assert not list(installed.parent.glob(".*"))  # no temporary folder left beside it
    assert installed_numbers(installed / "README.md")[("presence", "accuracy")] == 0.77
    assert ModelCard.load(str(installed / "README.md")).data.eval_results


def test_gate_refuses_a_model_that_loses_a_held_out_number(installed, tmp_path):
    record = tmp_path / "gate.json"
    # Better accuracy, but a worse proportion error: refused, the loss written down.
    worse = _report(tmp_path / "worse.json", accuracy=0.80, mae=14.0)
    assert not gate_passes(installed, [worse], record, force=False)
    assert json.loads(record.read_text())["losses"] == ["proportion mae_pts 13 -> 14"]
    assert gate_passes(installed, [worse], record, force=True)  # --force-install
    # A baseline moving does not count; as good or better everywhere passes.
    same = _report(tmp_path / "same.json", accuracy=0.77, mae=12.5, baseline=0.9)
    assert gate_passes(installed, [same], record, force=False)
    # Nothing installed there yet: nothing to lose.
    assert gate_passes(tmp_path / "empty", [worse], record, force=False)
