"""Reading unified JSONL for evaluation: questions, history, references, prompts, bad records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from records import bad_lines, block, good_records, rle, write_image

from skyeye.evaluation.samples import (
    DEFAULT_MCQ_TEMPLATE,
    RecordError,
    build_prompt,
    check_template,
    decode_rle,
    encode_mask,
    parse_sample,
    read_jsonl,
    strip_image_tokens,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "instruct"
GOLDEN = FIXTURES / "golden"


def _golden(name: str) -> list[dict]:
    return [json.loads(line) for line in (GOLDEN / name).read_text().splitlines() if line]


def test_benchmark_mcq_question_is_rebuilt_exactly_by_the_default_template():
    for rec in _golden("earthmind-bench.jsonl"):
        question = strip_image_tokens(rec["turns"][0]["text"])
        assert build_prompt(question, DEFAULT_MCQ_TEMPLATE, rec["meta"]["candidates"]) == question


def test_bare_mcq_question_gains_lettered_options():
    prompt = build_prompt("Is there a river?", DEFAULT_MCQ_TEMPLATE, ["yes", "no", "maybe"])
    assert prompt == (
        "Is there a river?\nA. yes\nB. no\nC. maybe\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_templates_substitute_plainly_and_are_checked():
    assert build_prompt("where is {<1><2><3><4>}?", "[refer] {question}") == (
        "[refer] where is {<1><2><3><4>}?"
    )
    with pytest.raises(ValueError, match="no {question}"):
        check_template("Describe.", "caption")
    with pytest.raises(ValueError, match="no {options}"):
        check_template("{question}", "mcq")


def test_image_placeholders_are_removed():
    assert strip_image_tokens("<image>\n<image>\nWhat changed?") == "What changed?"
    assert strip_image_tokens("Compare <image> and <image>.") == "Compare and ."


def test_multi_turn_record_replays_earlier_turns_as_history():
    rec = _golden("skyeyegpt.jsonl")[1]  # What is this? / An airport. / [refer] runway
    sample = parse_sample(rec, 2, FIXTURES, "grounding")
    assert sample.history == [
        {"role": "user", "content": "What is this?"},
        {"role": "assistant", "content": "An airport."},
    ]
    assert sample.question == "[refer] where is <p>the runway</p>?"
    assert sample.reference == "{<0><40><100><60>}"
    b = sample.ref_boxes[0]
    assert (b.x1, b.y1, b.x2, b.y2, b.angle) == (0.0, 0.4, 1.0, 0.6, None)


def test_stacked_band_files_and_sar_placeholders_are_kept():
    cen = parse_sample(_golden("chatearthnet.jsonl")[0], 1, FIXTURES, "caption")
    assert len(cen.images[0].paths) == 3 and len(cen.images[0].band_names) == 9
    sar = parse_sample(_golden("terrascope.jsonl")[1], 2, FIXTURES, "refseg")
    assert sar.images[0].wavelengths == [None, None]
    assert sar.ref_masks[0].shape == (8, 8)


def test_uncompressed_rle_decodes_column_major():
    # COCO RLE runs go down the columns: 1 zero, 2 ones, 3 zeros over a 2x3 grid.
    mask = decode_rle({"size": [2, 3], "counts": [1, 2, 3]})
    assert mask.tolist() == [[False, True, False], [True, False, False]]


def test_compressed_rle_round_trips():
    m = block(slice(1, 3), slice(2, 7))
    assert np.array_equal(decode_rle(encode_mask(m)), m)
    assert np.array_equal(decode_rle(rle(m)), m)


def test_reference_masks_are_ordered_by_seg_index(tmp_path):
    write_image(tmp_path, "a.png")
    rec = next(r for r in good_records() if r["id"] == "s2")
    sample = parse_sample(rec, 1, tmp_path, "refseg")
    assert [m.seg_index for m in sample.ref_masks] == [0, 1]
    assert sample.ref_masks[0].decode().sum() == 16 and sample.ref_masks[1].decode().sum() == 4


@pytest.mark.parametrize(
    ("index", "task", "reason"),
    [
        (1, "vqa", "missing image"),
        (2, "mcq", "answer not in candidates"),
        (3, "grounding", "missing annotation"),
        (4, "refseg", "missing annotation"),
        (5, "vqa", "bad turn order"),
    ],
)
def test_bad_records_raise_a_named_reason(tmp_path, index, task, reason):
    write_image(tmp_path, "a.png")
    rec = json.loads(bad_lines()[index])
    with pytest.raises(RecordError) as err:
        parse_sample(rec, 1, tmp_path, task)
    assert err.value.reason == reason


def test_jsonl_reader_reports_broken_lines_and_goes_on(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "x"}\n\n{broken\n[1, 2]\n{"id": "y"}\n')
    got = list(read_jsonl(path))
    assert [line for line, _ in got] == [1, 3, 4, 5]
    assert [r.reason if isinstance(r, RecordError) else r["id"] for _, r in got] == [
        "x",
        "malformed record",
        "malformed record",
        "y",
    ]


