"""The evaluator end to end: hand-computed numbers through the pipeline, reports that recompute
with skyeye.evaluation, bad records reported, model given as object/name/session, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from records import ScriptedSession, block, write_data
from skyeye_testing import make_tiny_model

from skyeye.chat.session import ChatSession, GenerationSettings
from skyeye.evaluation.cli import main
from skyeye.evaluation.metrics import (
    caption_metrics,
    grounding_metrics,
    mcq_metrics,
    refseg_metrics,
    vqa_exact_match,
)
from skyeye.evaluation.report import write_report
from skyeye.evaluation.runner import EvalConfig, evaluate, run_evaluation
from skyeye.evaluation.samples import DEFAULT_MCQ_TEMPLATE, decode_rle
from skyeye.evaluation.scoring import vqa_answer
from skyeye.grounding.parse import GroundedBox, parse_boxes


@pytest.fixture(scope="module")
def seg_model(tiny_llm_dir):
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    return model.eval(), processor


@pytest.fixture
def data(tmp_path):
    return write_data(tmp_path)


def _config(task: str, data, **kw) -> EvalConfig:
    return EvalConfig(task=task, image_root=data.parent, **kw)


# ------------------------------------------------------------ hand-computed numbers
def test_vqa_exact_match_through_the_pipeline(seg_model, data):
    session = ScriptedSession(*seg_model, ["  yes. ", "2"])
    report = run_evaluation(session, data, _config("vqa", data))
    assert report["metrics"] == {"accuracy": 0.5, "n": 2}
    assert [s["correct"] for s in report["samples"]] == [True, False]
    assert session.seen[0][0] == "Is there water?"  # the question without <image>


def test_vqa_reads_the_looks_first_grammar(seg_model, data):
    """skyeye-tiny answers "is there X?" with the mask first and the chat appends the measured
    figures: the yes/no is what is scored (it scored 0 before), and words after a mask too."""
    note = "(measured on the mask: forest 4.5 ha, 12.0% of the valid pixels)"
    answers = [f"<p>forest</p> [SEG] Yes, there is forest. {note}", "<p>lake</p> [SEG] two"]
    report = run_evaluation(ScriptedSession(*seg_model, answers), data, _config("vqa", data))
    assert report["metrics"] == {"accuracy": 1.0, "n": 2}
    assert [s["normalized"] for s in report["samples"]] == ["yes", "two"]
    wrong = ["<p>forest</p> [SEG] No. " + note, "<p>lake</p> [SEG]"]
    report = run_evaluation(ScriptedSession(*seg_model, wrong), data, _config("vqa", data))
    assert report["metrics"]["accuracy"] == 0.0 and report["unparseable"] == ["vqa2"]


def test_tasks_are_registered_by_kind_and_a_new_one_can_join():
    from skyeye.evaluation import tasks

    assert {"presence", "amount", "count", "mcq", "grounding", "caption", "refseg", "vqa"} <= set(
        tasks.list_tasks()
    )
    assert {"blind", "majority", "median_box", "index_thresholds"} <= set(tasks.list_baselines())
    assert tasks.get_task("mcq").parse("The answer is C.") == "C"
    assert tasks.get_task("presence").parse("<p>water</p> [SEG] No.") == "no"

    class Change(tasks.Task):
        name = "change-test"

    try:
        assert tasks.register_task(Change()) is tasks.get_task("change-test")
        with pytest.raises(ValueError, match="registered already"):
            tasks.register_task(Change())
    finally:
        tasks.TASKS.pop("change-test", None)
    with pytest.raises(ValueError, match="unknown task"):
        tasks.get_task("change-test")
    with pytest.raises(ValueError, match="pass --train"):
        tasks.get_task("presence").score([])


def test_mcq_letters_options_and_unparseable(seg_model, data):
    session = ScriptedSession(*seg_model, ["The answer is B.", "B or C"])
    report = run_evaluation(session, data, _config("mcq", data))
    assert report["metrics"] == {"accuracy": 0.5, "n": 2}
    assert report["unparseable"] == ["mcq2"]
    assert session.seen[1][0].splitlines()[1:4] == ["A. yes", "B. no", "C. maybe"]


def test_grounding_is_strict_at_half_and_counts_unparseable(seg_model, data):
    # g1 exact (IoU 1); g2 half the box (IoU exactly 0.5: not a hit); g3 no box at all.
    session = ScriptedSession(*seg_model, ["{<0><0><50><50>}", "{<0><0><25><50>}", "a pond"])
    report = run_evaluation(session, data, _config("grounding", data))
    m = report["metrics"]
    assert m["acc@0.5"] == pytest.approx(1 / 3) and m["acc@0.5_parseable"] == 0.5
    assert m["mean_iou"] == 0.5 and m["mean_iou_parseable"] == 0.75
    assert report["unparseable"] == ["g3"] and report["counts"]["unparseable"] == 1
    assert report["samples"][1]["target_ious"] == [0.5]


def test_refseg_resizes_predictions_to_the_reference_grid(seg_model, data):
    # Read grid 4x4 (read_size 4) for 8x8 references: each predicted pixel covers 2x2.
    half = lambda s: [block(slice(0, 2), slice(0, 1), size=4)]  # noqa: E731 -> 8 px of 16
    exact = lambda s: [block(slice(0, 2), slice(0, 2), size=4)]  # noqa: E731
    session = ScriptedSession(
        *seg_model,
        [("<p>lake</p> [SEG]", half), ("<p>lake</p> [SEG]", exact)],
        GenerationSettings(read_size=4),
    )
    report = run_evaluation(session, data, _config("refseg", data))
    m = report["metrics"]
    # units: s1 IoU 8/16; s2 mask 0 exact 16/16; s2 mask 1 missing (empty vs 4 px) IoU 0.
    assert m["giou"] == pytest.approx(0.5) and m["ciou"] == pytest.approx(24 / 36)
    assert m["precision@0.5"] == pytest.approx(1 / 3)
    assert (m["n"], m["n_records"]) == (3, 2)
    assert report["unparseable"] == ["s2"]
    assert report["samples"][1]["masks"][1]["pred_rle"] is None


def test_caption_perfect_answers_score_one(seg_model, data):
    session = ScriptedSession(
        *seg_model, ["A river crosses green fields.", "a small town near a lake"]
    )
    m = run_evaluation(session, data, _config("caption", data))["metrics"]
    assert m["bleu4"] == pytest.approx(1.0) and m["rouge_l"] == pytest.approx(1.0)


def test_history_is_replayed_before_the_question(seg_model, tmp_path):
    from records import record, write_image

    write_image(tmp_path, "a.png")
    rec = record("c", "vqa", "What is this?", "An airport.")
    rec["turns"] += [{"role": "user", "text": "Any planes?"}, {"role": "assistant", "text": "No."}]
    (tmp_path / "d.jsonl").write_text(json.dumps(rec) + "\n")
    session = ScriptedSession(*seg_model, ["no"])
    report = run_evaluation(session, tmp_path / "d.jsonl", _config("vqa", tmp_path / "d.jsonl"))
    prompt, history = session.seen[0]
    assert prompt == "Any planes?"
    assert history == [
        {"role": "user", "content": "What is this?"},
        {"role": "assistant", "content": "An airport."},
    ]
    assert report["metrics"]["accuracy"] == 1.0 and report["samples"][0]["history_turns"] == 2


def test_multiband_files_stack_into_one_image(seg_model, tmp_path):
    from records import record, write_image

    write_image(tmp_path, "rgb.png", seed=1)
    write_image(tmp_path, "red_edge.png", seed=2)
    rec = record("cen", "caption", "Describe.", "Fields.")
    rec["images"] = [
        {
            "path": ["rgb.png", "red_edge.png"],
            "band_names": ["B04", "B03", "B02", "B05", "B06", "B07"],
            "wavelengths": [0.665, 0.56, 0.49, 0.705, 0.74, 0.783],
        }
    ]
    (tmp_path / "d.jsonl").write_text(json.dumps(rec) + "\n")
    session = ScriptedSession(*seg_model, ["Fields."])
    report = run_evaluation(session, tmp_path / "d.jsonl", _config("caption", tmp_path / "d.jsonl"))
    assert report["counts"]["evaluated"] == 1
    image = session.images[0]
    assert image.band_names == ["B04", "B03", "B02", "B05", "B06", "B07"]
    assert image.wavelengths == [0.665, 0.56, 0.49, 0.705, 0.74, 0.783]
    from PIL import Image

    second = np.asarray(Image.open(tmp_path / "red_edge.png"), dtype=np.float32)
    assert np.array_equal(image.data[3:], second.transpose(2, 0, 1))


# ------------------------------------------------------------ the real (tiny) model
def _recompute(task: str, report: dict) -> dict:
    samples = report["samples"]
    preds = [s["prediction"] for s in samples]
    if task == "caption":
        return caption_metrics(preds, [[s["reference"]] for s in samples])
    if task == "vqa":  # a yes/no reference: the yes/no the answer opens with (vqa_answer)
        pairs = [vqa_answer(p or "", s["reference"]) for p, s in zip(preds, samples, strict=True)]
        return vqa_exact_match([a for a, _ in pairs], [r for _, r in pairs])
    if task == "mcq":
        return mcq_metrics(preds, [s["gold"] for s in samples])
    if task == "grounding":
        targets = [
            [GroundedBox(*b["xyxy"], angle=b.get("angle")) for b in s["ref_boxes"]] for s in samples
        ]
        shapes = [tuple(s["image_shape"]) for s in samples]
        return grounding_metrics(
            [parse_boxes(p) or None for p in preds], targets, image_shapes=shapes
        )
    units = [m for s in samples for m in s["masks"]]
    pred = [None if u["pred_rle"] is None else decode_rle(u["pred_rle"]) for u in units]
    return refseg_metrics(pred, [decode_rle(u["ref_rle"]) for u in units])


@pytest.mark.parametrize("task", ["caption", "vqa", "mcq", "grounding", "refseg"])
def test_report_numbers_equal_the_metrics_on_its_predictions(seg_model, data, task):
    model, processor = seg_model
    report = evaluate(
        model,
        data,
        _config(task, data),
        processor=processor,
        settings=GenerationSettings(max_new_tokens=6),
    )
    assert report["counts"]["evaluated"] == len(report["samples"]) > 0
    expected = _recompute(task, report)
    for key, value in report["metrics"].items():
        if key != "n_records":
            assert value == pytest.approx(expected[key]), key
    s = report["settings"]
    assert s["task"] == task and s["image_size"] == 16 and s["decoding"]["max_new_tokens"] == 6
    assert s["dtype"] == "float32" and s["device"] == "cpu" and len(s["config_sha256"]) == 64
    assert s["prompt_template"] == (DEFAULT_MCQ_TEMPLATE if task == "mcq" else "{question}")
    json.dumps(report)  # the whole report is plain JSON


def test_bad_records_are_skipped_with_ids_and_reasons(seg_model, data):
    report = run_evaluation(ScriptedSession(*seg_model, ["yes", "two"]), data, _config("vqa", data))
    assert report["counts"]["evaluated"] == 2
    reasons = {s["id"]: s["reason"] for s in report["skipped"]}
    assert reasons == {
        "line:4": "malformed record",
        "missing-img": "missing image",
        "order": "bad turn order",
    }
    assert report["counts"]["skipped_by_reason"] == {
        "malformed record": 1,
        "missing image": 1,
        "bad turn order": 1,
    }
    assert report["counts"]["other_task"] == 12  # 9 good + 3 bad records of other tasks


def test_limit_counts_records_of_the_task(seg_model, data):
    report = run_evaluation(
        ScriptedSession(*seg_model, ["yes"]), data, _config("vqa", data, limit=2)
    )
    assert report["counts"]["selected"] == 2
    assert report["counts"]["evaluated"] == 1 and report["skipped"][-1]["id"] == "missing-img"


def test_sampling_is_reproducible_with_the_seed(seg_model, data):
    settings = GenerationSettings(max_new_tokens=6, do_sample=True, temperature=1.5)
    runs = [
        [
            s["prediction"]
            for s in run_evaluation(
                ChatSession(*seg_model, settings), data, _config("caption", data, seed=3)
            )["samples"]
        ]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_model_by_folder_name_and_misuse(seg_model, data, tmp_path):
    model, processor = seg_model
    folder = tmp_path / "m"
    model.save_pretrained(folder, processor=processor)
    report = evaluate(
        str(folder), data, _config("vqa", data), settings=GenerationSettings(max_new_tokens=3)
    )
    assert report["settings"]["model"] == str(folder)
    assert len(report["settings"]["weights_sha256"]) == 64
    with pytest.raises(ValueError, match="processor"):
        evaluate(model, data, _config("vqa", data))
    with pytest.raises(ValueError, match="unknown task"):
        EvalConfig(task="detection")
    with pytest.raises(FileNotFoundError, match="no such data file"):
        run_evaluation(ChatSession(*seg_model), tmp_path / "none.jsonl", _config("vqa", data))


def test_cli_writes_a_report_and_fails_cleanly(seg_model, data, tmp_path):
    model, processor = seg_model
    folder = tmp_path / "m"
    model.save_pretrained(folder, processor=processor)
    out = tmp_path / "r" / "vqa.json"
    args = [
        "--model",
        str(folder),
        "--data",
        str(data),
        "--image-root",
        str(data.parent),
        "--quiet",
    ]
    assert main([*args, "--task", "vqa", "--out", str(out), "--max-new-tokens", "3"]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["command"][3:5] == ["--model", str(folder)]
    assert report["counts"]["evaluated"] == 2
    assert main([*args, "--task", "mcq", "--out", str(out), "--prompt-template", "{question}"]) == 2
    bad_data = [*args[:3], str(tmp_path / "none.jsonl"), *args[4:]]
    assert main([*bad_data, "--task", "vqa", "--out", str(out)]) == 2
    assert (
        main(["--model", str(tmp_path / "no-model"), *args[2:], "--task", "vqa", "--out", str(out)])
        == 2
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{broken\n")
    args[3] = str(empty)
    assert main([*args, "--task", "vqa", "--out", str(out)]) == 1  # report written, no metrics
    assert json.loads(out.read_text())["metrics"] is None


def test_write_report_creates_folders(tmp_path):
    path = write_report(
        {"metrics": {"accuracy": np.float64(0.5).item()}}, tmp_path / "a" / "b.json"
    )
    assert json.loads(path.read_text()) == {"metrics": {"accuracy": 0.5}}
