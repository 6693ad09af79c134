"""instruct_data.objects: scene, aircraft and region records computed from labels, each with its
licence; held-out sources never in train.jsonl; --permissive-only leaves research sets out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instruct_data.objects.__main__ import build, heldout_sources
from instruct_data.objects.aircraft import aircraft_records
from instruct_data.objects.scenes import class_words, scene_records
from instruct_data.schema import validate_record


def scene_set(
    root: Path, name: str, classes: list[str], per_class: int = 2, suffix: str = ".png"
) -> None:
    for k, cls in enumerate(classes):
        folder = root / name / cls
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), 10 * k + i, np.uint8)).save(
                folder / f"{cls}{i}{suffix}"
            )


def aircraft_set(root: Path) -> None:
    base = root / "airbus-aircraft"
    (base / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((1280, 1280, 3), np.uint8)).save(base / "images" / "a.jpg")
    rows = [
        "id,image_id,geometry,class",
        '1,a.jpg,"[(10, 10), (110, 10), (110, 60), (10, 60), (10, 10)]",Airplane',
        '2,a.jpg,"[(200, 200), (240, 240), (200, 240), (200, 200)]",Airplane',
        '3,a.jpg,"[(560, 560), (660, 560), (660, 660), (560, 660)]",Airplane',  # 64 % in tile 0
        '4,a.jpg,"[(630, 10), (730, 10), (730, 60), (630, 60)]",Airplane',  # 70 % in tile (0, 1)
        '5,a.jpg,"not a polygon",Airplane',
    ]
    (base / "annotations_subset.csv").write_text("\n".join(rows), encoding="utf-8")


def test_scene_records_mcq_presence_and_names(tmp_path):
    classes = ["agricultural", "beach", "forest", "parkinglot", "river"]
    scene_set(tmp_path, "ucmerced", classes)
    records = list(scene_records(tmp_path, "ucmerced"))
    assert len(records) == 3 * 2 * len(classes)
    for rec in records:
        assert validate_record(rec.to_dict()) == []
        assert rec.meta["licence"].startswith("research use only") and not rec.meta["permissive"]
    mcq = [r for r in records if r.meta["gen_task"] == "scene_mcq"]
    for rec in mcq:
        options = rec.meta["options"]
        assert len(set(options)) == 4 and rec.meta["class"] in options
        assert options["ABCD".index(rec.meta["answer"])] == rec.meta["class"]
        assert rec.turns[1].text == rec.meta["answer"]
    assert class_words("HerbaceousVegetation") == "herbaceous vegetation"
    assert class_words("SeaLake") == "sea or lake"


def test_aircraft_counts_boxes_and_masks_follow_the_labels(tmp_path):
    aircraft_set(tmp_path)
    skipped: dict[str, int] = {}
    records = {r.id: r for r in aircraft_records(tmp_path, tmp_path / "out", skipped=skipped)}
    assert skipped == {"unreadable box polygon": 1}
    first = records["airbus-aircraft:a_0_0:count"]
    assert first.meta["count"] == 3  # boxes 1, 2 and box 3, 64 % inside
    assert first.turns[1].text == "<p>aircraft</p> [SEG] There are 3 aircraft."
    assert records["airbus-aircraft:a_0_1:count"].meta["count"] == 1
    assert records["airbus-aircraft:a_1_1:count"].meta["count"] == 0  # box 3: 4 % inside
    listing = records["airbus-aircraft:a_0_0:list"]
    assert len(listing.turns[1].boxes) == 3
    largest = records["airbus-aircraft:a_0_0:refer"].turns[1].boxes[0]
    assert largest.xyxy == pytest.approx((560 / 640, 560 / 640, 1.0, 1.0))  # clipped: 80 x 80
    for rec in records.values():
        assert validate_record(rec.to_dict()) == []
        assert rec.meta["licence"].startswith("CC BY-NC-SA")


def test_heldout_sources_and_permissive_only(tmp_path):
    held, _ = heldout_sources()
    assert {"eurosat-ms", "ucmerced"} <= held
    scene_set(tmp_path, "ucmerced", ["a", "b", "c", "d"], 1)
    scene_set(tmp_path, "aid-scenes", ["A", "B", "C", "D"], 1, ".jpg")
    summary = build(tmp_path, tmp_path / "out")
    train = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    heldout = (tmp_path / "out" / "heldout.jsonl").read_text().splitlines()
    assert {r["source"] for r in train} == {"aid-scenes"} and len(heldout) == 12
    assert summary["heldout"] == {f"ucmerced/{k}": 4 for k in ("scene", "scene_mcq", "presence")}
    summary = build(tmp_path, tmp_path / "out2", permissive_only=True)
    assert summary["train"] == {} and summary["skipped"]["not permissive (--permissive-only)"] == 24
