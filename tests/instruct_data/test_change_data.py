"""Change data: LEVIR-CC / LEVIR-MCI / CDVQA converters and the OSCD / AirChange / STAR builder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from instruct_data.change import build as change_build
from instruct_data.change.build import build_change_data, load_splits
from instruct_data.change.licences import is_permissive
from instruct_data.convert import get_converter, run_conversion
from instruct_data.schema import validate_record
from skyeye.chat.change_answer import read_change_question
from skyeye.errors import SpecError
from skyeye.evaluation.change_eval import question_text
from skyeye.grounding.parse import parse_seg_phrases
from skyeye.io.rle import decode_rle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_change_fixtures import make_airchange, make_oscd  # noqa: E402

CHANGE = FIXTURES / "change"


def _convert(source: str, input_path: Path, images: Path, out: Path):
    report = run_conversion(get_converter(source), input_path, images, out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(validate_record(r) == [] for r in records)
    assert report.converted + sum(report.skipped.values()) == report.read
    return report, records


def test_levir_cc_captions_become_two_image_change_records(tmp_path):
    root = CHANGE / "levir"
    report, records = _convert(
        "levir-cc", root / "LevirCCcaptions.json", root, tmp_path / "o.jsonl"
    )
    assert report.read == 4 and report.converted == 2
    assert report.skipped == {"missing image": 1, "malformed record": 1}
    first = records[0]
    assert [im["time"] for im in first["images"]] == ["pre", "post"]
    assert first["images"][0]["path"].endswith("train/A/train_000001.png")
    assert first["turns"][1]["text"] == "A house is built in the top left corner."
    assert len(first["meta"]["references"]) == 2 and first["meta"]["commercial_use"] is False


def test_levir_mci_masks_per_changed_class_and_an_empty_mask_without_change(tmp_path):
    root = CHANGE / "levir"
    _, records = _convert("levir-mci", root / "LevirCCcaptions.json", root, tmp_path / "o.jsonl")
    changed, same = records
    assert changed["turns"][1]["text"].startswith(
        "<p>changed buildings</p> [SEG] <p>changed roads</p> [SEG] A house"
    )
    building = decode_rle(changed["turns"][1]["masks"][0]["rle"])
    road = decode_rle(changed["turns"][1]["masks"][1]["rle"])
    assert building.sum() == 36 and road.sum() == 32 and not (building & road).any()
    assert all(m["image_index"] == 1 for m in changed["turns"][1]["masks"])
    assert same["turns"][1]["text"].startswith("<p>changes</p> [SEG] The scene is the same")
    assert decode_rle(same["turns"][1]["masks"][0]["rle"]).sum() == 0


def test_cdvqa_questions_answers_and_images_are_joined(tmp_path):
    root = CHANGE / "cdvqa"
    report, records = _convert("cdvqa", root / "Test_questions.json", root, tmp_path / "o.jsonl")
    assert report.converted == 3 and report.skipped == {"missing image": 1, "no answer": 1}
    answers = [r["turns"][1]["text"] for r in records]
    assert answers == ["Yes.", "30% to 40%.", "Non-vegetated ground surface."]
    assert records[1]["meta"]["answer"] == "30_to_40" and records[1]["task"] == "change"
    assert records[0]["images"][1]["path"].endswith("im2/00001.png")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    make_oscd(data / "oscd-s2-change")
    make_airchange(data / "sztaki-airchange")
    out = tmp_path_factory.mktemp("out")
    splits = {"oscd-s2-change": ["beta"], "sztaki-airchange": ["Szada/2"]}
    summary = build_change_data(data, out, ["oscd-s2-change", "sztaki-airchange"], splits=splits)
    return out, summary


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_held_out_cities_and_pairs_never_reach_training(built):
    out, summary = built
    train, val = _read(out / "train.jsonl"), _read(out / "val.jsonl")
    assert {r["meta"]["pair_id"] for r in val} == {"beta", "Szada/2"}
    assert not {r["meta"]["pair_id"] for r in train} & {"beta", "Szada/2"}
    assert (
        summary.records["oscd-s2-change/val"] > 0 and summary.records["sztaki-airchange/train"] > 0
    )
    assert all(validate_record(r) == [] for r in train + val)
    assert all(not is_permissive(r) for r in train + val)  # both sets are research-only


def test_oscd_records_name_the_dates_and_carry_the_change_mask(built):
    out, _ = built
    records = [r for r in _read(out / "conversations.jsonl") if r["source"] == "oscd-s2-change"]
    what = next(r for r in records if r["id"] == "oscd-s2-change:alpha:r00000c00000:what")
    # dates from dates.txt (the first date's file name holds the processing time, not this)
    assert what["turns"][0]["text"].startswith(
        "Image 1 (2015-07-04): <image>\nImage 2 (2018-02-11): <image>\n"
    )
    mask = decode_rle(what["turns"][1]["masks"][0]["rle"])
    assert mask.shape == (40, 40) and mask[5:15, 5:25].all() and mask.sum() == 200
    assert "About 12%" in what["turns"][1]["text"] and " ha)" in what["turns"][1]["text"]
    kinds = {r["id"].rsplit(":", 1)[1] for r in records if ":alpha:" in r["id"]}
    assert {"what", "any", "much", "appeared-buildings", "much-buildings"} <= kinds
    # beta's second date is 2 px smaller: cropped to the common 38 px, nothing warped
    beta = next(
        r
        for r in records
        if r["id"].startswith("oscd-s2-change:beta:") and r["id"].endswith(":what")
    )
    assert beta["images"][0]["size"] == [38, 38]


def test_whole_change_records_open_with_the_phrase_the_chat_forces_for_their_question(built):
    # The change decoder is trained on these records' [SEG] states: a dataset's own name for its
    # change ("urban change") would train a state the chat never sends (it forces its phrase).
    out, _ = built
    records = _read(out / "conversations.jsonl")
    asked = [r for r in records if r["id"].rsplit(":", 1)[1] in ("what", "any")]
    assert {r["source"] for r in asked} == {"oscd-s2-change", "sztaki-airchange"}
    for record in asked:
        question = read_change_question(question_text(record["turns"][0]["text"]))
        assert question is not None, record["id"]
        assert parse_seg_phrases(record["turns"][1]["text"])[0] == question.phrase, record["id"]


def test_airchange_has_no_dates_and_measures_hectares_at_1_5_m(built):
    out, _ = built
    what = next(
        r
        for r in _read(out / "conversations.jsonl")
        if r["id"] == "sztaki-airchange:Szada/1:r00000c00000:what"
    )
    assert what["turns"][0]["text"].startswith("<image>\n<image>\n")
    n = decode_rle(what["turns"][1]["masks"][0]["rle"]).sum()
    assert n == 36 + 64
    assert f"({n * 1.5**2 / 1e4:.2f} ha)" in what["turns"][1]["text"]
    # 8-bit photos: the records name the sensor, so the tiles are read as a user's PNG is
    assert [im["sensor"] for im in what["images"]] == ["rgb", "rgb"]


def test_permissive_only_leaves_research_sets_out(tmp_path):
    make_airchange(tmp_path / "data" / "sztaki-airchange")
    summary = build_change_data(
        tmp_path / "data", tmp_path / "out", ["sztaki-airchange"], splits={}, permissive_only=True
    )
    assert sum(summary.records.values()) == 0
    assert (tmp_path / "out" / "train.jsonl").read_text() == ""


def test_the_committed_split_file_names_held_out_pairs_and_a_bad_one_is_one_line(tmp_path):
    splits = load_splits()
    assert splits["oscd-s2-change"] and splits["sztaki-airchange"] and splits["star-pairs"]
    bad = tmp_path / "splits.yaml"
    bad.write_text("oscd-s2-change: {val: rennes}\n")
    with pytest.raises(SpecError, match="list of pair ids"):
        load_splits(bad)
    assert set(change_build.list_change_sources()) == {
        "oscd-s2-change",
        "sztaki-airchange",
        "star-pairs",
    }


def test_star_pairs_change_where_class_masks_differ(tmp_path):
    from instruct_data.change.pairs import PairRecords
    from instruct_data.change.star import StarPairs

    spec = FIXTURES / "from_rasters" / "spec.yaml"  # the from-rasters tests' own fixture scenes
    pairs = [p for p in StarPairs(spec, None, val=[]).pairs() if not hasattr(p, "reason")]
    assert pairs, "the fixture spec gives STAR pairs"
    kinds = {p.extra_meta["star_kind"] for p in pairs}
    assert "crop" in kinds
    for p in pairs:
        assert p.change.shape == p.valid.shape and not (p.change & ~p.valid).any()
        gained = np.zeros_like(p.change)
        for t in p.transitions:
            gained |= t.mask
        assert (gained == p.change).all()  # every changed pixel is some class's transition
    writer = PairRecords(tmp_path, 4096, 4096)
    records = [r.to_dict() for p in pairs[:2] for r in writer.records(p)]
    assert records and all(validate_record(r) == [] for r in records)
    assert all(r["meta"]["commercial_use"] is True for r in records)


def test_a_second_tiling_at_the_scene_window_has_its_own_ids_and_skips_small_pairs(tmp_path):
    from instruct_data.change.pairs import PairRecords
    from instruct_data.change.star import StarPairs

    spec = FIXTURES / "from_rasters" / "spec.yaml"
    pair = next(
        p
        for p in StarPairs(spec, None, val=[]).pairs()
        if not hasattr(p, "reason") and p.valid.mean() >= 0.95
    )
    side = min(pair.change.shape)
    base = PairRecords(tmp_path, side // 2, side // 2)
    large = PairRecords(tmp_path, side, side, tag=f"s{side}", min_side=side // 2 + 1)
    small_ids = {r.to_dict()["id"] for r in base.records(pair)}
    large_recs = [r.to_dict() for r in large.records(pair)]
    assert large_recs and all(f":s{side}r00000c00000:" in r["id"] for r in large_recs)
    assert all(r["images"][0]["size"] == [side, side] for r in large_recs)
    assert not small_ids & {r["id"] for r in large_recs}  # no id written twice
    # a pair no larger than the first tiling's tiles is not cut again
    again = PairRecords(tmp_path, side, side, tag="s9", min_side=side + 1)
    assert list(again.records(pair)) == []


def test_a_paste_pair_knows_no_change_outside_the_paste_even_where_unlabelled():
    from instruct_data.change.star import StarPairs

    spec = FIXTURES / "from_rasters" / "spec.yaml"
    pastes = [
        p
        for p in StarPairs(spec, None, val=[]).pairs()
        if not hasattr(p, "reason") and p.extra_meta["star_kind"] == "paste"
    ]
    assert pastes, "the fixture spec gives paste pairs"
    for p in pastes:
        same = (p.before.data == p.after.data).all(axis=0)
        data = p.before.valid_mask & p.after.valid_mask
        # wherever the two images are the same pixels, the label is known: no change
        assert p.valid[same & data].all() and not p.change[same].any()
