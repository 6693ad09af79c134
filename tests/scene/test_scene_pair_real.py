"""The two-date scene on a real pair: NAIP 2009 / 2020 of one North Dakota quarter-quad
(`../shared/data/opengeos-naip-landsat`: lakes and wetlands whose extent differs between the
dates), through `python -m skyeye.scene --image A --image B`. The figures hold together: the
transitions of each class lie inside the change mask (gained and lost never share a pixel, so
their sum is at most the mask's), the areas are the pixels' and the polygons hold the mask's
area once sieved. Slow; skipped while the bundled skyeye-tiny has no change decoder (`config.mask_change`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rasterio
from rasterio.features import sieve

from skyeye.bundled import resolve_model_folder
from skyeye.grounding.polygons import CONNECTIVITY, SIEVE

pytestmark = pytest.mark.slow

MODEL = "skyeye-tiny"
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "opengeos-naip-landsat"
PAIR = [DATA / "naip" / "m_4709963_se_14_1_20090818.tif",
        DATA / "naip" / "m_4709963_se_14_1_20200831.tif"]  # fmt: skip
#: 5 m pixels (EPSG:26914): one pixel's area in m².
PIXEL_M2 = 25.0


def _has_change_decoder(model: str) -> bool:
    config = json.loads((resolve_model_folder(model) / "config.json").read_text())
    return bool(config.get("mask_change"))


def check_real_pair(model: str, out: Path) -> dict:
    """Run the pair through the CLI and check its figures; returns answer.json."""
    from skyeye.scene.cli import main

    argv = ["--image", str(PAIR[0]), "--image", str(PAIR[1]), "--date", "2009-08-18",
            "--date", "2020-08-31", "--sensor", "naip", "--prompt", "What changed?",
            "--out", str(out), "--model", model, "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    answer = json.loads((out / "answer.json").read_text())
    change = answer["change"]
    with rasterio.open(out / "change.tif") as src:
        mask = src.read(1)
    assert int((mask == 1).sum()) == change["pixels"]
    assert change["area_m2"] == pytest.approx(change["pixels"] * PIXEL_M2)
    # The 2020 tile sits 1 m and one row off the 2009 one: the overlap is said.
    assert answer["overlap"] < 1.0 and "only the overlap is compared" in answer["answer"]
    # Every class's transitions lie inside the change mask, each pixel counted once.
    t = answer["transitions"]
    assert t["measured"] == ["water", "vegetation", "built-up", "bare"] and t["general"]
    assert [c["name"] for c in t["classes"]] == t["measured"]  # every class, said or not
    for c in t["classes"]:
        gained, lost = c["gained"], c["lost"]
        assert gained["pixels"] + lost["pixels"] <= change["pixels"]
        for part in (gained, lost):
            assert part["area_m2"] == pytest.approx(part["pixels"] * PIXEL_M2)
            assert part["share_of_compared"] == pytest.approx(
                part["pixels"] / change["compared_pixels"], abs=1e-6
            )
    left = 1 - change["compared_pixels"] / (answer["scene"]["width"] * answer["scene"]["height"])
    assert t["left_out_share"] == pytest.approx(left, abs=1e-6)
    # The polygons hold the mask's area once sieved as they are (regions under SIEVE pixels
    # dropped: a speckled change mask loses most of its area there, a compact one a little).
    sieved = sieve((mask == 1).astype("uint8"), size=SIEVE, connectivity=CONNECTIVITY)
    expected = float(sieved.sum()) * PIXEL_M2
    assert change["polygon_area_m2"] == pytest.approx(expected, rel=0.01, abs=PIXEL_M2)
    return answer


@pytest.mark.skipif(not all(p.is_file() for p in PAIR), reason="NAIP pair not in ../shared/data")
@pytest.mark.skipif(
    not _has_change_decoder(MODEL), reason=f"{MODEL} has no change decoder (mask_change) yet"
)
def test_real_naip_pair_transitions_add_up_to_the_change_mask(tmp_path):
    check_real_pair(MODEL, tmp_path / "out")
