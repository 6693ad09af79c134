"""The record runner goes through the driver loop the held-out driver uses: its baselines
(majority, blind, random letter) are scored as the model's answers are; record images are read
as training reads them."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from records import ScriptedSession, record, write_data, write_image
from skyeye_testing import make_tiny_model

from skyeye.data.record_image import read_record_image
from skyeye.evaluation.cli import main
from skyeye.evaluation.metrics import mcq_metrics
from skyeye.evaluation.runner import EvalConfig, run_evaluation
from skyeye.evaluation.tasks import Question, TileContext, get_baseline, get_task


@pytest.fixture(scope="module")
def seg_model(tiny_llm_dir):
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    return model.eval(), processor


def _config(task: str, data, **kw) -> EvalConfig:
    return EvalConfig(task=task, image_root=data.parent, **kw)


def test_mcq_default_baselines_are_scored_as_the_model(seg_model, tmp_path):
    data = write_data(tmp_path)
    session = ScriptedSession(*seg_model, ["The answer is B.", "B or C"])
    report = run_evaluation(session, data, _config("mcq", data))
    assert report["settings"]["baselines"] == ["majority", "random_letter"]
    assert list(report["baselines"]) == ["majority", "random_letter"]
    # majority of the evaluated records' letters (B, A: a tie goes to the first seen)
    assert [s["baselines"]["majority"] for s in report["samples"]] == ["B", "B"]
    assert report["baselines"]["majority"] == {"accuracy": 0.5, "n": 2}
    letters = [s["baselines"]["random_letter"] for s in report["samples"]]
    assert letters[0] in "AB" and letters[1] in "ABC"  # the options of each question
    again = run_evaluation(ScriptedSession(*seg_model, ["B", "A"]), data, _config("mcq", data))
    assert [s["baselines"]["random_letter"] for s in again["samples"]] == letters  # seeded
    want = mcq_metrics(letters, ["B", "A"])["accuracy"]
    assert report["baselines"]["random_letter"] == {"accuracy": want, "n": 2}
    assert report["metrics"] == {"accuracy": 0.5, "n": 2}  # the model's numbers unchanged


def test_blind_baseline_asks_without_images_and_none_turns_them_off(seg_model, tmp_path):
    data = write_data(tmp_path)
    # per record: the model's answer, then the blind model's (no image, no history)
    session = ScriptedSession(*seg_model, ["B", "B", "A", "C"])
    config = _config("mcq", data, baselines=("blind",))
    report = run_evaluation(session, data, config)
    assert report["baselines"] == {"blind": {"accuracy": 0.5, "n": 2}}
    assert [s["baselines"]["blind"] for s in report["samples"]] == ["B", "C"]
    assert session.seen[1][1] == [] and session.seen[3][1] == []  # asked without history
    assert report["metrics"]["accuracy"] == 1.0
    plain = run_evaluation(
        ScriptedSession(*seg_model, ["B", "A"]), data, _config("mcq", data, baselines=())
    )
    assert plain["baselines"] == {} and "baselines" not in plain["samples"][0]


def test_vqa_majority_is_per_answer_kind(seg_model, tmp_path):
    data = write_data(tmp_path)
    report = run_evaluation(
        ScriptedSession(*seg_model, ["no", "three"]), data, _config("vqa", data)
    )
    # "Is there water?" -> the majority yes/no; "How many lakes?" -> the majority other answer
    assert [s["baselines"]["majority"] for s in report["samples"]] == ["yes", "two"]
    assert report["baselines"]["majority"] == {"accuracy": 1.0, "n": 2}
    assert report["metrics"]["accuracy"] == 0.0


def test_cli_baselines_flag(seg_model, tmp_path):
    data = write_data(tmp_path)
    model, processor = seg_model
    folder = tmp_path / "m"
    model.save_pretrained(folder, processor=processor)
    out = tmp_path / "mcq.json"
    args = ["--model", str(folder), "--data", str(data), "--image-root", str(tmp_path), "--quiet"]
    args += ["--task", "mcq", "--out", str(out), "--max-new-tokens", "2"]
    assert main([*args, "--baselines", "random-letter,blind"]) == 0
    report = json.loads(out.read_text())
    assert list(report["baselines"]) == ["random_letter", "blind"]
    assert main([*args, "--baselines", "median_box"]) == 2  # not a record baseline of mcq
    train = ["--train", str(data)]
    assert main([*args, *train, "--baselines", "blind"]) == 2  # the card's baselines there


def test_random_letter_is_seeded_and_uniform_over_the_options():
    task, draw = get_task("mcq"), get_baseline("random_letter")

    def letters(seed: int, options: str, n: int = 4000) -> list[str]:
        out = []
        for i in range(n):
            question = Question(f"Question {i}?", options=tuple(options))
            ctx = TileContext(None, None, {"id": f"r{i}"}, {}, seed=seed)
            out.append(draw(task, question, ctx)["random_letter"])
        return out

    four = letters(0, "ABCD")
    counts = Counter(four)
    assert set(counts) == set("ABCD")
    assert all(850 <= c <= 1150 for c in counts.values()), counts  # 1000 each, sd ~27
    assert letters(0, "ABCD") == four  # the same seed draws the same letters
    assert letters(1, "ABCD") != four
    assert set(letters(0, "ABC", 300)) == set("ABC")
    with pytest.raises(ValueError, match="no options"):
        draw(task, Question("Free text?"), TileContext(None, None, {"id": "x"}, {}))


def test_a_list_of_png_files_is_read_as_training_reads_it(seg_model, tmp_path):
    """ChatEarthNet-style RGB + red-edge PNG triplets: the runner's image is training's, the
    same pixel_values (its own stacking read them as an "rgb" photo, scaled otherwise)."""
    write_image(tmp_path, "rgb.png", seed=1)
    write_image(tmp_path, "red_edge.png", seed=2)
    entry = {
        "path": ["rgb.png", "red_edge.png"],
        "band_names": ["B04", "B03", "B02", "B05", "B06", "B07"],
        "wavelengths": [0.665, 0.56, 0.49, 0.705, 0.74, 0.783],
    }
    rec = record("cen", "caption", "Describe.", "Fields.")
    rec["images"] = [entry]
    (tmp_path / "d.jsonl").write_text(json.dumps(rec) + "\n")
    session = ScriptedSession(*seg_model, ["Fields."])
    run_evaluation(session, tmp_path / "d.jsonl", _config("caption", tmp_path / "d.jsonl"))
    training = read_record_image(entry, tmp_path, max_size=session.settings.read_size)
    processor = session.processor.image_processor
    got = processor([session.images[0]])["pixel_values"][0]
    want = processor([training])["pixel_values"][0]
    assert session.images[0].sensor == training.sensor
    np.testing.assert_array_equal(got.numpy(), want.numpy())
