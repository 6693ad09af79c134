"""Model cards (`skyeye.hub card`) parse cleanly and their usage snippet runs; `push` is a dry run
by default and really uploads the folder to a (local mock) hub when asked."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard

from skyeye.hub import card as hub

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from mock_hub import MockHub  # noqa: E402

REPORT = {
    "task": "grounding",
    "data": "held-out-scenes.jsonl",
    "metrics": {"acc@0.5": 0.25, "acc@0.5_parseable": 0.5, "mean_iou": 0.31, "n": 8},
    "settings": {"image_size": 16, "max_new_tokens": 8},
    "per_sample": [{"index": 0, "iou": 0.1}],
}
RECIPE = "name: tiny-test\nseed: 0\nlr: 0.0002\nstages:\n  align: {steps: 10}\n  lora: {steps: 20, rank: 8}\n"
INFO = {
    "title": "skyeye-test",
    "datasets": ["example/eo-instructions"],
    "training_data": "Instructions generated from two Sentinel-2 scenes (CC-BY-4.0).",
    "tags": ["test"],
}


@pytest.fixture
def model_folder(tiny_model, tmp_path: Path) -> Path:
    from skyeye.modeling.checkpoint import save_model

    model, processor = tiny_model
    folder = tmp_path / "skyeye-test"
    save_model(model, folder, processor=processor)
    return folder


def _inputs(tmp_path: Path, **info) -> hub.CardInputs:
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    return hub.CardInputs(
        evaluations=hub.read_evaluation(tmp_path / "report.json"),
        recipe_path=tmp_path / "recipe.yaml",
        info={**INFO, **info},
    )


def test_card_parses_without_warnings_and_carries_the_facts(model_folder, tmp_path, caplog):
    path = hub.write_card(model_folder, _inputs(tmp_path))
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        card = ModelCard.load(path)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    data = card.data
    assert data.pipeline_tag == "image-text-to-text" and data.library_name == "skyeye"
    assert data.license == "apache-2.0" and data.datasets == ["example/eo-instructions"]
    assert "remote-sensing" in data.tags and "test" in data.tags
    results = {(r.task_type, r.metric_type): r.metric_value for r in data.eval_results}
    assert results[("object-detection", "acc@0.5")] == 0.25
    assert results[("object-detection", "mean_iou")] == 0.31
    assert len(results) == 3  # n and per-sample lists are not metrics
    text = card.text
    assert "| acc@0.5_parseable | 0.5 |" in text and "(8 samples)" in text
    assert "- **lr**: 0.0002" in text and "rank: 8" in text  # recipe summary and full YAML
    assert "Sentinel-2 scenes (CC-BY-4.0)" in text
    assert "B8A 0.865" in text and "VV (SAR)" in text  # sensors and wavelengths
    assert "16 px" in text  # the folder's own image size, read from its config


def test_card_usage_snippet_runs(model_folder, tmp_path) -> None:
    image = REPO / "examples" / "naip_rgbn.tif"
    path = hub.write_card(
        model_folder, _inputs(tmp_path, model_id=str(model_folder), example_image=str(image))
    )
    _run_snippet(path, cwd=tmp_path)


def _run_snippet(card_path: Path, cwd: Path) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card_path.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "the card has one python usage block"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", blocks[0]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "boxes:" in proc.stdout
    return proc.stdout


@pytest.mark.slow
def test_packaged_skyeye_tiny_card_is_current_and_its_snippet_runs() -> None:
    folder = REPO / "skyeye" / "bundled" / "skyeye-tiny"
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "image-text-to-text"
    assert 'load_chat("skyeye-tiny")' in card.text
    _run_snippet(folder / "README.md", cwd=REPO)


def test_model_index_has_one_entry_per_task_and_each_metric_once(model_folder, tmp_path) -> None:
    """Tasks asked on one held-out set stay apart (huggingface_hub merges results that share a
    task type and dataset), and no entry names a metric twice."""
    (tmp_path / "r.json").write_text(
        json.dumps(
            {
                "tasks": {
                    "presence": {"accuracy": 0.84, "n": 76, "dataset": "held-out scenes"},
                    "proportion": {
                        "agreement_within_10pts": 0.79,
                        "n": 68,
                        "dataset": "held-out scenes",
                    },
                }
            }
        )
    )
    inputs = hub.CardInputs(evaluations=hub.read_evaluation(tmp_path / "r.json"))
    card = ModelCard.load(hub.write_card(model_folder, inputs))
    results = card.data.eval_results
    by_task = {}
    for r in results:
        by_task.setdefault(r.task_name, []).append(r.metric_name)
    assert by_task == {"presence": ["accuracy"], "proportion": ["agreement_within_10pts"]}
    index = card.data.to_dict()["model-index"][0]["results"]
    assert len(index) == 2
    for entry in index:
        names = [m["name"] for m in entry["metrics"]]
        assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ("[1, 2]", "is a JSON object"),
        ("{", "not valid JSON"),
        ('{"task": "vqa"}', "no numeric metrics"),
    ],
)
def test_bad_reports_are_named(tmp_path, report, message) -> None:
    (tmp_path / "r.json").write_text(report)
    with pytest.raises(hub.HubError, match=message):
        hub.read_evaluation(tmp_path / "r.json")


def test_multi_task_report_and_bad_info(tmp_path) -> None:
    (tmp_path / "r.json").write_text(
        json.dumps({"tasks": {"vqa": {"accuracy": 0.5, "n": 4}, "caption": {"cider": 0.1}}})
    )
    evs = hub.read_evaluation(tmp_path / "r.json")
    assert [(e.task, e.n, e.metrics) for e in evs] == [
        ("vqa", 4, [("accuracy", 0.5)]),
        ("caption", None, [("cider", 0.1)]),
    ]
    (tmp_path / "info.yaml").write_text("titel: typo\n")
    with pytest.raises(hub.HubError, match=r"unknown key\(s\) \['titel'\]"):
        hub.read_info(tmp_path / "info.yaml")
    with pytest.raises(hub.HubError, match="no config.json"):
        hub.build_card(tmp_path)


def test_push_is_a_dry_run_by_default(model_folder, tmp_path, capsys) -> None:
    with pytest.raises(hub.HubError, match="no README.md model card"):
        hub.plan_push(model_folder, "org/name")
    hub.write_card(model_folder)
    (model_folder / "__pycache__").mkdir()
    (model_folder / "__pycache__" / "x.pyc").write_bytes(b"0")
    assert hub.main(["push", "--model", str(model_folder), "--repo", "org/name"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dry run") and "model.safetensors" in out and "README.md" in out
    assert "x.pyc" not in out
    assert hub.main(["push", "--model", str(model_folder), "--repo", "no-slash"]) == 2


def test_push_uploads_every_file_to_a_local_hub(model_folder, monkeypatch) -> None:
    from huggingface_hub import constants

    # The suite runs with HF_HUB_OFFLINE=1; the only server reached here is the local mock.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.write_card(model_folder)
    with MockHub() as mock:
        api = HfApi(endpoint=mock.url, token="hf_test_token")
        plan = hub.push(
            model_folder, "org/skyeye-test", dry_run=False, api=api, commit_message="v1"
        )
        assert plan.url and plan.url.startswith(mock.url + "/org/skyeye-test/commit/")
        uploaded = mock.repos["org/skyeye-test"]
    local = {
        p.relative_to(model_folder).as_posix(): p.read_bytes()
        for p in model_folder.rglob("*")
        if p.is_file()
    }
    assert uploaded == local  # byte for byte, nothing missing, nothing extra
    header = mock.commits[0]["lines"][0]
    assert header["key"] == "header" and header["value"]["summary"] == "v1"
    assert all(a == "Bearer hf_test_token" for a in mock.auth)
    assert ("POST", "/api/validate-yaml") in mock.requests  # the hub checked the card's metadata


def test_cli_card_writes_readme(model_folder, tmp_path, capsys) -> None:
    (tmp_path / "info.yaml").write_text("title: from-cli\nlicense: mit\n")
    argv = ["card", "--model", str(model_folder), "--info", str(tmp_path / "info.yaml")]
    assert hub.main(argv) == 0
    card = ModelCard.load(model_folder / "README.md")
    assert card.data.license == "mit" and "# from-cli" in card.text
    assert hub.main(["card", "--model", str(tmp_path / "nowhere")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_a_card_write_that_fails_keeps_the_card_before_it(
    model_folder, monkeypatch, capsys
) -> None:
    import errno

    from skyeye import atomic

    assert hub.main(["card", "--model", str(model_folder)]) == 0
    before = (model_folder / "README.md").read_bytes()
    real_replace = atomic.os.replace

    def full_disk(src, dst):  # the disk fills as the new card is put in place
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full_disk)
    assert hub.main(["card", "--model", str(model_folder), "--print"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is full" in err and "free space" in err
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    assert (model_folder / "README.md").read_bytes() == before
    assert sorted(p.name for p in model_folder.iterdir() if "README" in p.name) == ["README.md"]


def test_card_lists_every_training_set_with_its_licence(model_folder, tmp_path) -> None:
    from finetune.card_sets import training_sets

    recipe = {
        "change_data": {"sources": ["star-pairs", "oscd-s2-change", "sztaki-airchange"]},
        "objects_data": {"datasets": ["aid-scenes", "eolearn-slovenia", "eurosat-ms"]},
    }
    sets = training_sets(recipe)
    names = [s["name"] for s in sets]
    # eurosat-ms is held out for transfer validation: never trained on, not listed
    assert names == [
        "star-pairs",
        "oscd-s2-change",
        "sztaki-airchange",
        "aid-scenes",
        "eolearn-slovenia",
    ]
    info = {"training_sets": sets, "license": None}
    path = hub.write_card(model_folder, _inputs(tmp_path, **info))
    card = ModelCard.load(path)
    text = card.text
    # The weights inherit the research / non-commercial terms: the metadata says so too.
    assert (card.data.license, card.data.license_name) == ("other", "research-non-commercial")
    with pytest.raises(hub.HubError, match="license: mit contradicts .*--permissive-only"):
        hub.build_card(model_folder, _inputs(tmp_path, training_sets=sets, license="mit"))
    assert "### Training sets and licences" in text
    assert "| oscd-s2-change | change maps CC BY-NC-SA" in text
    assert "| aid-scenes | research use only" in text and "| eolearn-slovenia | MIT" in text
    assert "(oscd-s2-change, sztaki-airchange, aid-scenes)" in text
    permissive = training_sets(recipe, permissive_only=True)
    assert [s["name"] for s in permissive] == ["star-pairs", "eolearn-slovenia"]
    path = hub.write_card(model_folder, _inputs(tmp_path, training_sets=permissive))
    assert "Every listed training set allows commercial use." in ModelCard.load(path).text
    assert ModelCard.load(path).data.license == INFO.get("license", "apache-2.0")
    (model_folder / "README.md").unlink()
    assert "Training sets and licences" not in hub.build_card(model_folder, _inputs(tmp_path)).text
    with pytest.raises(hub.HubError, match="training_sets\\[0\\]"):
        hub.build_card(model_folder, _inputs(tmp_path, training_sets=[{"name": "x"}]))


def test_cli_card_keeps_the_training_sets_and_licence_of_the_card_it_rewrites(
    model_folder, tmp_path
) -> None:
    # An installed model's card (finetune.install) lists research / non-commercial sets; a card
    # rewritten through the CLI with new reports and no sets must not turn it into apache-2.0.
    sets = [
        {"name": "oscd-s2-change", "licence": "CC BY-NC-SA 4.0", "permissive": False},
        {"name": "star-pairs", "licence": "CC BY 4.0", "permissive": True},
    ]
    info = {"training_sets": sets, "license": None}
    hub.write_card(model_folder, _inputs(tmp_path, **info))
    (tmp_path / "report2.json").write_text(json.dumps({**REPORT, "metrics": {"acc@0.5": 0.5}}))
    argv = ["card", "--model", str(model_folder), "--eval", str(tmp_path / "report2.json")]
    assert hub.main(argv) == 0
    card = ModelCard.load(model_folder / "README.md")
    assert (card.data.license, card.data.license_name) == ("other", "research-non-commercial")
    assert card.data.training_sets == sets
    assert "| oscd-s2-change | CC BY-NC-SA 4.0 | **research / non-commercial only** |" in card.text
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"acc@0.5": 0.5}  # the new report, not the old one
    # Sets given anew replace the recorded ones, an empty list included.
    (tmp_path / "info.yaml").write_text("training_sets: []\n")
    assert (
        hub.main(["card", "--model", str(model_folder), "--info", str(tmp_path / "info.yaml")]) == 0
    )
    card = ModelCard.load(model_folder / "README.md")
    assert card.data.license == "apache-2.0" and "training_sets" not in card.data.to_dict()


def test_cli_card_keeps_the_numbers_of_tasks_no_new_report_gives(model_folder, tmp_path) -> None:
    # A model changed in one part (a head trained apart) is re-measured where that part answers;
    # --keep-evaluations keeps every other task's numbers, with their sample counts.
    (tmp_path / "old.json").write_text(
        json.dumps(
            {
                "tasks": {
                    "presence": {
                        "accuracy": 0.78,
                        "blind_accuracy": 0.47,
                        "n": 433,
                        "dataset": "held-out",
                    },
                    "mcq": {"accuracy": 0.55, "n": 96, "dataset": "held-out"},
                }
            }
        )
    )
    assert (
        hub.main(["card", "--model", str(model_folder), "--eval", str(tmp_path / "old.json")]) == 0
    )
    (tmp_path / "new.json").write_text(
        json.dumps({"task": "mcq", "dataset": "held-out", "metrics": {"accuracy": 0.6, "n": 96}})
    )
    argv = ["card", "--model", str(model_folder), "--eval", str(tmp_path / "new.json")]
    assert hub.main([*argv, "--keep-evaluations"]) == 0
    kept = {(e.task, e.n): dict(e.metrics) for e in hub.card_evaluations(model_folder)}
    assert kept == {
        ("presence", 433): {"accuracy": 0.78, "blind_accuracy": 0.47},
        ("mcq", 96): {"accuracy": 0.6},  # the new report's, not the old card's
    }
    # Without the flag only the given reports are on the card.
    assert hub.main(argv) == 0
    assert [e.task for e in hub.card_evaluations(model_folder)] == ["mcq"]
