"""finetune.objects_mix: the recipe's object and scene records become one file whose image
paths all start from the folder of the recipe's train.jsonl (stage 2 and the mask stage read
both with one root), only the named datasets' training records, capped per dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import instruct_data.objects.__main__ as objects_cli
from finetune.objects_mix import build_objects_mix
from skyeye.data.record_image import record_image_source


def _record(rid: str, dataset: str, path: str, root: str, split: str = "train") -> dict:
    return {
        "schema_version": "1.0",
        "id": rid,
        "source": dataset,
        "task": "vqa",
        "images": [{"path": path, "modality": "optical"}],
        "turns": [
            {"role": "user", "text": "<image>\nWhat kind of scene does this image show?"},
            {"role": "assistant", "text": "airport."},
        ],
        "meta": {"dataset": dataset, "image_root": root, "split": split},
    }


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shared folder with two scene images, and `instruct_data.objects.build` writing a
    train.jsonl of three datasets (one root each way), as the real builder lays them out."""
    from PIL import Image

    root = tmp_path / "shared"
    for name in ("a.png", "b.png"):
        (root / "aid-scenes" / "Airport").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "aid-scenes" / "Airport" / name)

    def fake_build(shared_dir: Path, out: Path, permissive_only: bool = False, seed: int = 0):
        (out / "images" / "airbus-aircraft").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(out / "images" / "airbus-aircraft" / "t.png")
        records = [
            _record("aid:a", "aid-scenes", "aid-scenes/Airport/a.png", "shared"),
            _record("aid:b", "aid-scenes", "aid-scenes/Airport/b.png", "shared"),
            _record("air:t", "airbus-aircraft", "images/airbus-aircraft/t.png", "out"),
            _record("ucm:x", "ucmerced", "ucmerced/x.png", "shared"),  # not named: left out
        ]
        if not permissive_only:
            (out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        else:
            (out / "train.jsonl").write_text("")
        return {"skipped": {}}

    monkeypatch.setattr(objects_cli, "build", fake_build)
    return root


def test_named_records_are_readable_from_the_data_folder(tmp_path, shared):
    data = tmp_path / "work" / "data"
    data.mkdir(parents=True)
    section = {"datasets": ["aid-scenes", "airbus-aircraft"]}
    path = build_objects_mix(section, shared, data, permissive_only=False, seed=0)
    assert path == data / "objects.jsonl"
    records = [json.loads(line) for line in path.open()]
    assert [r["id"] for r in records] == ["aid:a", "aid:b", "air:t"]
    # Every image resolves under the data folder, the shared ones copied in byte for byte.
    for r in records:
        image = data / r["images"][0]["path"]
        assert image.is_file() and data in image.resolve().parents
    copied = data / records[0]["images"][0]["path"]
    assert copied.read_bytes() == (shared / "aid-scenes/Airport/a.png").read_bytes()
    # The training datasets' own path check (root: the file's folder) accepts every one.
    for r in records:
        assert Path(record_image_source(r["images"][0]["path"], path.parent)).is_file()
    # Built once: a second call reuses the file.
    stamp = path.stat().st_mtime_ns
    assert build_objects_mix(section, shared, data, permissive_only=False, seed=0) == path
    assert path.stat().st_mtime_ns == stamp


def test_cap_per_dataset_is_a_seeded_sample(tmp_path, shared):
    section = {"datasets": ["aid-scenes", "airbus-aircraft"], "max_per_dataset": 1}
    picks = []
    for run in ("one", "two"):
        data = tmp_path / run
        data.mkdir()
        path = build_objects_mix(section, shared, data, permissive_only=False, seed=3)
        picks.append([json.loads(line)["id"] for line in path.open()])
    assert picks[0] == picks[1] and len(picks[0]) == 2 and picks[0][1] == "air:t"


def test_a_named_dataset_without_records_or_no_dataset_named_is_an_error(tmp_path, shared):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ValueError, match="no training record of 'eurosat-ms'"):
        build_objects_mix({"datasets": ["eurosat-ms"]}, shared, data, permissive_only=False, seed=0)
    with pytest.raises(ValueError, match="datasets is empty"):
        build_objects_mix({}, shared, data, permissive_only=False, seed=0)
    assert not (data / "objects.jsonl").exists()  # nothing written half
    # A permissive-only build may legitimately keep none of the research-only sets.
    path = build_objects_mix(
        {"datasets": ["aid-scenes"]}, shared, data, permissive_only=True, seed=0
    )
    assert path.read_text() == ""
