"""The base LLM's answers replayed in stage 2 (`finetune/replay.py`)."""

from __future__ import annotations

from finetune.replay import PROMPTS, _whole_sentences, read_prompts, replay_records
from instruct_data.schema import validate_record


def test_prompt_file_splits_training_and_held_out_prompts(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# comment\nWhat is 2+2?\n\nName a colour.\n## held-out\nWhat is a lake?\n")
    assert read_prompts(f) == (["What is 2+2?", "Name a colour."], ["What is a lake?"])
    train, held = read_prompts(PROMPTS)
    assert len(train) >= 80 and len(held) >= 10 and not set(train) & set(held)


def test_replay_records_are_valid_text_only_conversations_with_distinct_ids():
    records = replay_records(["Q1?", "Q2?"], ["A one.", ""], repeat=3)
    assert len(records) == 3  # the empty answer is dropped, the other copied 3 times
    assert len({r["id"] for r in records}) == 3
    for r in records:
        assert r["images"] == [] and [t["role"] for t in r["turns"]] == ["user", "assistant"]
        assert validate_record(r) == []


def test_an_answer_cut_at_the_token_limit_ends_at_its_last_sentence():
    assert _whole_sentences("One. Two is cut") == "One."
    assert _whole_sentences("Done.") == "Done."
    assert _whole_sentences("no sentence end") == "no sentence end"
