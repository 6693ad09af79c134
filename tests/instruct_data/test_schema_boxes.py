"""The unified record format and the box text helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from instruct_data.boxes import (
    BoxParseError,
    canonical_box_text,
    format_box,
    lhrs_to_box_text,
    parse_boxes,
)
from instruct_data.masks import decode_mask, encode_mask, union_rles
from instruct_data.schema import (
    Conversation,
    ImageRef,
    Mask,
    Turn,
    load_jsonl,
    validate_record,
    write_jsonl,
)

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "instruct_data/schema/conversation-v1.json"


def good() -> Conversation:
    m = np.zeros((4, 4), bool)
    m[1:3, 1:3] = True
    return Conversation(
        id="x:1",
        source="test",
        task="segmentation",
        images=[
            ImageRef(
                path="a.tif",
                modality="multispectral",
                band_names=["B04", "B08"],
                wavelengths=[0.665, 0.842],
            )
        ],
        turns=[
            Turn("user", "<image>\nWhere is the lake?"),
            Turn(
                "assistant",
                "<p>lake</p> {<25><25><75><75>} [SEG]",
                boxes=parse_boxes("{<25><25><75><75>}"),
                masks=[Mask(seg_index=0, rle=encode_mask(m))],
            ),
        ],
    )


def test_valid_record_round_trips_through_jsonl(tmp_path: Path) -> None:
    c = good()
    c.images[0].sensor = "rgb"
    assert validate_record(c.to_dict()) == []
    n = write_jsonl(tmp_path / "d/x.jsonl", [c, c.to_dict()])
    back = list(load_jsonl(tmp_path / "d/x.jsonl"))
    assert n == 2 and back[0] == c.to_dict() == back[1]
    assert Conversation.from_dict(back[0]).to_dict() == c.to_dict()


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (
            lambda d: d["turns"][1].update(text="<p>lake</p> {<25><25><75><75>}"),
            "[SEG] tokens but 1 masks",
        ),
        (lambda d: d["turns"][0].update(text="Where?"), "1 images but 0 <image>"),
        (lambda d: d["turns"][1].update(text="  "), "text: empty"),
        (lambda d: d["images"][0].update(wavelengths=[0.665]), "2 band_names but 1 wavelengths"),
        (lambda d: d["images"][0].update(modality="hyperspectral"), "modality"),
        (lambda d: d["images"][0].update(sensor="iphone"), "sensor: 'iphone' not one of"),
        (lambda d: d["turns"].reverse(), "expected 'user'"),
        (lambda d: d["turns"][1]["boxes"][0].update(xyxy=[0.5, 0.5, 0.2, 0.9]), "x2 < x1"),
        (lambda d: d["turns"][1].pop("boxes"), "1 boxes in text but 0"),
        (lambda d: d["turns"][1]["masks"][0].update(image_index=3), "image_index: out of range"),
        (lambda d: d.update(schema_version="2.0"), "schema_version"),
        (lambda d: d.update(extra=1), "unknown keys"),
    ],
)
def test_validate_record_names_each_problem(mutate, expect: str) -> None:
    d = good().to_dict()
    mutate(d)
    problems = validate_record(d)
    assert any(expect in p for p in problems), problems


def test_json_schema_file_matches_dataclasses() -> None:
    s = json.loads(SCHEMA_FILE.read_text())
    assert set(s["properties"]) == set(good().to_dict()) | {"meta"}
    assert set(s["$defs"]["image"]["properties"]) == {
        "path",
        "modality",
        "band_names",
        "wavelengths",
        "time",
        "size",
        "sensor",
    }
    from instruct_data.schema import MODALITIES, TASKS

    assert tuple(s["properties"]["task"]["enum"]) == TASKS
    assert tuple(s["$defs"]["image"]["properties"]["modality"]["enum"]) == MODALITIES


def test_load_jsonl_names_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n{oops\n')
    with pytest.raises(ValueError, match=r"x.jsonl:3"):
        list(load_jsonl(p))


def test_boxes_parse_angle_delim_and_format() -> None:
    text = canonical_box_text("{<10><20><30><40>}<delim>{<50><50><60><70>|<-30>}")
    assert text == "{<10><20><30><40>}{<50><50><60><70>|<-30>}"
    a, b = parse_boxes(text)
    assert a.xyxy == (0.1, 0.2, 0.3, 0.4) and a.angle is None
    assert b.angle == -30.0 and b.text == "{<50><50><60><70>|<-30>}"
    assert format_box(b.xyxy, b.angle) == b.text
    assert format_box((0.123, 0.0, 0.999, 1.0)) == "{<12><0><100><100>}"
    assert lhrs_to_box_text("the car [12, 30, 40, 55].") == "the car {<12><30><40><55>}."


@pytest.mark.parametrize(
    "bad", ["{<1><2><3>}", "{<10><20><5><40>}", "{<1><2><3><400>}", "{<a><b><c><d>}"]
)
def test_malformed_boxes_raise(bad: str) -> None:
    with pytest.raises(BoxParseError):
        parse_boxes(f"here {bad}")


def test_union_of_rles_is_pixel_or() -> None:
    a = np.zeros((5, 6), bool)
    b = np.zeros((5, 6), bool)
    a[0, :] = True
    b[:, 0] = True
    u = decode_mask(union_rles([encode_mask(a), encode_mask(b)]))
    assert (u == (a | b)).all()
    with pytest.raises(ValueError, match="different sizes"):
        union_rles([encode_mask(a), encode_mask(np.zeros((2, 2), bool))])
