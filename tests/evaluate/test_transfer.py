"""Transfer validation's scoring (skyeye.evaluation.transfer) and evaluate's --mcq-scoring."""

from __future__ import annotations

import json
from collections import Counter

from skyeye.evaluation.cli import _settings, build_parser
from skyeye.evaluation.transfer import (
    _summarise,
    card_tasks,
    correct,
    read_answer,
    reference,
    unparsed_reason,
)
from skyeye.grounding.parse import GroundedBox
from skyeye.hub.card import read_evaluation


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


def test_unreadable_answers_are_counted_with_their_reason():
    refusal = "I cannot count aircraft: this model's mask decoder was not trained to outline them."
    assert read_answer("count", refusal, []) is None
    assert unparsed_reason(refusal) == "I cannot count aircraft"
    assert unparsed_reason("error: the conversation is 9000 tokens").startswith("error:")
    assert unparsed_reason("<p>water</p> [SEG] lots") == "no answer of the asked kind in: lots"
    assert read_answer("scene_mcq", "E", [], "ABCDE") == "E"
    assert read_answer("scene_mcq", "E", []) is None  # four options list no E


def test_blocks_hold_every_system_and_baseline_per_dataset(tmp_path):
    def rec(ds, answer):
        q = "Which class?\nA. x\nB. y\nC. z\nD. w\nE. v"
        return {"meta": {"dataset": ds, "gen_task": "scene_mcq", "answer": answer},
                "turns": [{"text": f"<image>\n{q}"}]}  # fmt: skip

    recs = [rec("one", "A"), rec("one", "A"), rec("two", "E")]
    refs = [r["meta"]["answer"] for r in recs]
    scores = {
        s: [correct("scene_mcq", said, r) for said, r in zip(answers, refs, strict=True)]
        for s, answers in {"measured": "AAE", "raw": "ABB", "blind": [None, "A", "A"]}.items()
    }
    unparsed = {"measured": Counter(), "raw": Counter(), "blind": Counter({"no letter": 1})}
    block = _summarise("scene_mcq", recs, refs, scores, unparsed, [True] * 3, seed=0)
    assert block["measured"]["acc"] == 1.0 and block["raw"]["acc"] == round(1 / 3, 4)
    assert block["blind"]["parsed"] == round(2 / 3, 4)
    assert block["blind"]["unparsed_reasons"] == {"no letter": 1}
    assert block["majority"] == {"acc": round(2 / 3, 4), "answer": "A"}
    assert block["by_dataset"]["two"]["measured"] == {"acc": 1.0}
    assert block["by_dataset"]["one"]["n"] == 2 and "random_letter" in block["by_dataset"]["one"]
    assert "answered_by_measured" not in block  # it answered every record
    # The model card reads the same numbers, the measured system's unprefixed.
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card_tasks({"kinds": {"scene_mcq": block}})))
    (ev,) = read_evaluation(path)
    got = dict(ev.metrics)
    assert ev.task == "held-out sources: scene_mcq" and ev.n == 3
    assert ev.dataset == "held-out sources one, two"
    assert got["acc"] == 1.0 and got["raw_acc"] == round(1 / 3, 4)
    assert got["majority_acc"] == round(2 / 3, 4) and got["measured_parsed"] == 1.0


def test_records_the_measured_chat_declined_are_wrong_and_reported_apart():
    # Asked about a class its decoder does not outline, the chat says it cannot tell: wrong in
    # the block, and every system is also scored on the records it did answer.
    recs = [{"meta": {"dataset": "d", "gen_task": "presence"}} for _ in range(4)]
    refs = ["yes", "no", "no", "yes"]
    said = {"measured": ["yes", None, None, "no"], "raw": ["no"] * 4, "blind": ["yes"] * 4}
    scores = {
        s: [correct("presence", a, r) for a, r in zip(v, refs, strict=True)]
        for s, v in said.items()
    }
    unparsed = {"measured": Counter({"I cannot tell": 2}), "raw": Counter(), "blind": Counter()}
    answered = [a is not None for a in said["measured"]]
    block = _summarise("presence", recs, refs, scores, unparsed, answered, seed=0)
    assert block["measured"] == {
        "acc": 0.25,
        "parsed": 0.5,
        "unparsed_reasons": {"I cannot tell": 2},
    }
    sub = block["answered_by_measured"]
    assert sub["n"] == 2 and sub["measured"] == {"acc": 0.5} and sub["blind"] == {"acc": 1.0}
    assert sub["raw"] == {"acc": 0.0} and sub["majority"] == {"acc": 1.0}  # "yes"
