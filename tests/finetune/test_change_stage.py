"""`python -m finetune.change_stage` on the tiny model: the change decoder alone learns a square
that appears between dates from cached states, resumes to the same weights, and the skyeye-tiny
recipe runs it on permissive data only when asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from change_pairs import write_square_pairs
from safetensors.torch import load_file
from skyeye_testing import make_tiny_model

import finetune.change_train as change_train
from finetune.change_stage import main as change_stage
from skyeye.hub.card import read_evaluation

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def start(tmp_path, tiny_llm_dir) -> Path:
    model, processor = make_tiny_model(
        tiny_llm_dir,
        use_mask_head=True,
        mask_head_hidden_size=32,
        mask_decoder="hires",
        mask_hires_dim=8,
        mask_hires_indices=True,
        image_processor_kwargs={"hires_size": 24},
    )
    model.save_pretrained(tmp_path / "start", processor=processor)
    return tmp_path / "start"


def _args(start: Path, data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "--model", str(start), "--data", str(data), "--out", str(out), "--steps", str(steps),
        "--batch-size", "8", "--lr", "1e-2", "--save-dtype", "float32", *extra,
    ]  # fmt: skip


def test_change_iou_rises_on_a_square_that_appears(tmp_path, start):
    data = tmp_path / "data"
    train = write_square_pairs(data, "train", 24, seed=0)
    val = write_square_pairs(data, "val", 8, seed=1)
    # Before training (one step at a vanishing rate): the fresh decoder finds no square.
    first = tmp_path / "untrained" / "model"
    assert change_stage(_args(start, train, first, 1, "--val", str(val), "--lr", "1e-12")) == 0
    untrained = json.loads((first.parent / "change_stage_log.json").read_text())
    out = tmp_path / "change" / "model"
    assert change_stage(_args(start, train, out, 20, "--val", str(val), "--save-every", "0")) == 0
    report = json.loads((out.parent / "change_stage_log.json").read_text())
    before = untrained["val"]["change_decoder"]["synthetic-change"]
    after = report["val"]["change_decoder"]["synthetic-change"]
    assert report["masks"] == 24 and after["n"] == 8
    assert before["giou"] < 0.3 and after["giou"] >= 0.8 and after["ciou"] >= 0.8
    otsu = report["val"]["baselines"]["synthetic-change"]["otsu-difference"]
    assert after["ciou"] > otsu["ciou"]  # the baselines scored on the same held-out records
    # The model card reads the same numbers, each beside the baselines of the same pairs.
    (card,) = read_evaluation(out.parent / "change_evaluation.json")
    got = dict(card.metrics)
    assert card.task == "change (synthetic-change)" and card.n == 8
    assert got["giou"] == after["giou"] and got["baseline_otsu-difference_ciou"] == otsu["ciou"]
    # Only the change decoder is new; every other weight is the start model's, bit for bit.
    config = json.loads((out / "config.json").read_text())
    assert config["mask_change"] is True
    old, new = (
        load_file(str(start / "model.safetensors")),
        load_file(str(out / "model.safetensors")),
    )
    assert {k.split(".")[0] for k in set(new) - set(old)} == {"change_head"}
    assert all(torch.equal(old[k], new[k]) for k in old)


def test_a_model_with_a_change_decoder_is_trained_further_not_restarted(tmp_path, start):
    # A user fine-tunes the released change decoder on their own pairs by passing the model
    # folder as --model: the stage starts from that decoder's weights, never a new one.
    data = tmp_path / "data"
    train = write_square_pairs(data, "train", 24, seed=0)
    val = write_square_pairs(data, "val", 8, seed=1)
    first = tmp_path / "first" / "model"
    assert change_stage(_args(start, train, first, 20, "--val", str(val))) == 0
    again = tmp_path / "again" / "model"
    assert change_stage(_args(first, train, again, 1, "--val", str(val), "--lr", "1e-12")) == 0
    trained = json.loads((first.parent / "change_stage_log.json").read_text())
    kept = json.loads((again.parent / "change_stage_log.json").read_text())
    score = kept["val"]["change_decoder"]["synthetic-change"]
    assert score["giou"] >= 0.8  # a fresh decoder scores < 0.3 on these pairs (test above)
    assert score["giou"] == pytest.approx(
        trained["val"]["change_decoder"]["synthetic-change"]["giou"], abs=0.02
    )
    old, new = (
        load_file(str(first / "model.safetensors")),
        load_file(str(again / "model.safetensors")),
    )
    assert set(old) == set(new)
    assert all(torch.allclose(old[k], new[k], atol=1e-5) for k in old)


class _Killed(Exception):
    pass


def test_change_stage_resumes_to_the_same_weights(tmp_path, start, monkeypatch, capsys):
    train = write_square_pairs(tmp_path / "data", "train", 8, seed=0)
    whole = tmp_path / "whole" / "model"
    assert change_stage(_args(start, train, whole, 8, "--save-every", "3")) == 0
    expected = load_file(str(whole / "model.safetensors"))

    def kill(step: int) -> None:
        if step == 7:  # after the checkpoint of step 6, before the end
            raise _Killed

    monkeypatch.setattr(change_train, "_after_step", kill)
    resumed = tmp_path / "resumed" / "model"
    with pytest.raises(_Killed):
        change_stage(_args(start, train, resumed, 8, "--save-every", "3"))
    assert (resumed.parent / "checkpoints" / "checkpoint-6").is_dir()
    # Another run's settings never resume from these checkpoints: one line, exit 2.
    monkeypatch.setattr(change_train, "_after_step", lambda step: None)
    assert (
        change_stage(_args(start, train, resumed, 8, "--save-every", "3", "--dice-weight", "2"))
        == 2
    )
    assert "written by another change run" in capsys.readouterr().err
    ran: list[int] = []
    monkeypatch.setattr(change_train, "_after_step", ran.append)
    torch.rand(5)  # another history of the global generator before the resumed run
    assert change_stage(_args(start, train, resumed, 8, "--save-every", "3")) == 0
    assert ran == [7, 8]  # resumed after step 6, not started over
    got = load_file(str(resumed / "model.safetensors"))
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_no_change_records_is_a_one_line_error(tmp_path, start, capsys):
    data = tmp_path / "plain.jsonl"
    data.write_text(json.dumps({"id": "a", "images": [{"path": "x.tif"}], "turns": []}) + "\n")
    assert change_stage(_args(start, data, tmp_path / "out" / "model", 2)) == 2
    assert "holds no change record" in capsys.readouterr().err


def test_the_recipe_runs_the_change_stage_and_permissive_builds_use_star_pairs_only():
    from finetune import head_stages, skyeye_tiny
    from finetune.change_stage import _parser

    recipe = yaml.safe_load((REPO / "finetune/recipes/skyeye-tiny.yaml").read_text())
    assert "change" in skyeye_tiny.STAGES
    assert skyeye_tiny.STAGES.index("mask") < skyeye_tiny.STAGES.index("change")
    assert skyeye_tiny.STAGES.index("change") < skyeye_tiny.STAGES.index("validate")
    options = skyeye_tiny.cli_options(recipe["change_stage"])
    parsed = _parser().parse_args(["--model", "m", "--data", "d", "--out", "o", *options])
    assert parsed.steps > 0 and parsed.max_records >= 0
    full = head_stages.change_data_args(recipe, Path("shared"), Path("out"), permissive=False)
    only = head_stages.change_data_args(recipe, Path("shared"), Path("out"), permissive=True)
    assert "--permissive-only" not in full and "--permissive-only" in only
    # The change builder leaves the research-only sources out of a permissive build.
    from instruct_data.change.licences import get_licence

    sources = recipe["change_data"]["sources"]
    assert {s for s in sources if get_licence(s).commercial} == {"star-pairs"}
    assert "oscd-s2-change" in sources and "sztaki-airchange" in sources


def test_max_records_draws_the_large_share_from_scene_sized_records():
    from finetune.change_stage import sample_records

    def line(k: int, side: int) -> str:
        return json.dumps({"id": str(k), "images": [{"size": [side, side]}]})

    lines = [line(k, 512 if k % 10 == 0 else 64) for k in range(100)]  # 10 large, 90 small
    picked = sample_records(lines, 20, 0.4, 320, seed=0)
    sides = [json.loads(x)["images"][0]["size"][0] for x in picked]
    assert len(picked) == 20 and sides.count(512) == 8  # 40 % of 20, not the 10 % of the file
    assert picked == sorted(picked, key=lines.index)  # file order kept
    assert picked == sample_records(lines, 20, 0.4, 320, seed=0)  # seeded
    # more asked than there are: every large record, the rest small
    assert (
        sum(
            json.loads(x)["images"][0]["size"][0] == 512
            for x in sample_records(lines, 50, 0.5, 320, 0)
        )
        == 10
    )
    uniform = sample_records(lines, 20, 0.0, 320, seed=0)
    assert len(uniform) == 20


def test_whole_change_records_are_kept_only_for_the_sources_named(tmp_path):
    # OSCD marks urban change alone: with --whole-change-from, its "changed land cover" records
    # (which call a new lake no change) are left out and its "new buildings" records kept.
    from finetune.change_cache import change_record_lines

    def record(source: str, rid: str, answer: str) -> dict:
        turns = [{"role": "user", "text": "<image>\n<image>\nq"},
                 {"role": "assistant", "text": answer}]  # fmt: skip
        return {"id": f"{source}:p:{rid}", "source": source, "images": [{}, {}], "turns": turns}

    records = [
        record("oscd-s2-change", "what", "<p>changed land cover</p> [SEG] About 1 ha changed."),
        record("oscd-s2-change", "appeared-buildings", "<p>new buildings</p> [SEG]"),
        record("star-pairs", "what", "<p>changed land cover</p> [SEG] About 2 ha changed."),
        record("star-pairs", "appeared-water", "<p>new water</p> [SEG]"),
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))

    def ids(lines: list[str]) -> list[str]:
        return [json.loads(line)["id"] for line in lines]

    assert len(change_record_lines(path)) == 4
    kept = change_record_lines(path, whole_change_sources=frozenset({"star-pairs"}))
    assert ids(kept) == [
        "oscd-s2-change:p:appeared-buildings", "star-pairs:p:what", "star-pairs:p:appeared-water",
    ]  # fmt: skip
