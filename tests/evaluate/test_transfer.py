"""Transfer validation's scoring (skyeye.evaluation.transfer) and evaluate's --mcq-scoring."""

from __future__ import annotations

from skyeye.evaluation.cli import _settings, build_parser
from skyeye.evaluation.transfer import correct, read_answer, reference
from skyeye.grounding.parse import GroundedBox


def test_answers_are_read_and_scored_per_kind():
    assert correct("scene_mcq", read_answer("scene_mcq", "C. forest", []), "C") == {"acc": 1.0}
    assert correct("scene_mcq", read_answer("scene_mcq", "B or C", []), "C") == {"acc": 0.0}
    said = read_answer("count", "<p>aircraft</p> [SEG] There are 12 aircraft.", [])
    assert correct("count", said, 13) == {"acc": 0.0, "within1": 1.0}
    assert correct("count", read_answer("count", "many", []), 3) == {"acc": 0.0, "within1": 0.0}
    assert read_answer("presence", "<p>river</p> [SEG] No.", []) == "no"
    measured = [GroundedBox(0.1, 0.1, 0.3, 0.3)]
    box = read_answer("refer", "{<0><0><100><100>}", measured)  # the measured box wins
    assert correct("refer", box, (0.1, 0.1, 0.3, 0.35)) == {"acc": 1.0}
    assert correct("refer", read_answer("refer", "{<0><0><100><100>}", []), (0, 0, 0.3, 0.3)) == {
        "acc": 0.0
    }
    record = {"meta": {"gen_task": "count", "count": 4}, "turns": []}
    assert reference(record) == 4


def test_evaluate_takes_the_mcq_scoring():
    base = ["--data", "d.jsonl", "--task", "mcq", "--out", "r.json"]
    assert _settings(build_parser().parse_args(base)).mcq_scoring == "likelihood"
    args = build_parser().parse_args([*base, "--mcq-scoring", "generate"])
    assert _settings(args).mcq_scoring == "generate"
