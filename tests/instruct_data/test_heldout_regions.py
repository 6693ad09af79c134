"""instruct_data.objects.heldout_regions: held-out water-body and cloud counts and boxes are the
connected regions of the hand-made mask, and every record goes to heldout.jsonl."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from instruct_data.objects.heldout_regions import UKIS_MIN_PIXELS, ukis_records
from instruct_data.schema import validate_record
from skyeye.grounding.parse import parse_boxes


def ukis_scene(root: Path) -> np.ndarray:
    """A 512 px UKIS-like scene: in the top-left tile 3 lakes (one below the size limit) and a
    cloud; elsewhere clear land."""
    msk = np.full((512, 512), 3, np.uint8)
    msk[10:20, 10:20] = 1  # 100 px
    msk[40:60, 70:100] = 1  # 600 px: the largest
    msk[100:102, 100:103] = 1  # 6 px: under UKIS_MIN_PIXELS
    msk[80:90, 5:25] = 4  # a cloud
    folder = root / "ukis-csmask-cloudshadow" / "tests" / "testfiles"
    folder.mkdir(parents=True)
    img = np.random.default_rng(0).random((512, 512, 6), dtype=np.float32) * 0.3
    np.savez(folder / "landsat5.npz", img=img, msk=msk[..., None])
    return msk


def test_counts_and_largest_boxes_are_the_mask_regions(tmp_path):
    ukis_scene(tmp_path / "shared")
    out = tmp_path / "out"
    records = {r.id: r for r in ukis_records(tmp_path / "shared", out)}
    assert all(validate_record(r.to_dict()) == [] for r in records.values())
    water = records["ukis-landsat5:s1:r0c0:water:count"]
    assert water.meta["count"] == 2 and UKIS_MIN_PIXELS > 6
    assert f"at least {UKIS_MIN_PIXELS} pixels" in water.turns[0].text
    assert records["ukis-landsat5:s1:r0c0:cloud:count"].meta["count"] == 1
    assert records["ukis-landsat5:s1:r128c128:water:count"].meta["count"] == 0
    assert "ukis-landsat5:s1:r128c128:water:refer" not in records  # nothing to box
    refer = records["ukis-landsat5:s1:r0c0:water:refer"]
    assert refer.turns[1].boxes[0].xyxy == (70 / 128, 40 / 128, 100 / 128, 60 / 128)
    (box,) = parse_boxes(refer.turns[1].text)
    assert (box.x1, box.y1) == (0.55, 0.31)  # the 0-100 grid of the answer
    # half resolution: the 600 px lake is 150 px there, the 100 px one 25 px
    assert records["ukis-landsat5:s2:r0c0:water:count"].meta["count"] == 2
    assert (out / records["ukis-landsat5:s2:r0c0:water:count"].images[0].path).is_file()
    assert {r.meta["permissive"] for r in records.values()} == {True}
