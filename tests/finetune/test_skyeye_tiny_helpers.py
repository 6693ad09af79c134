"""Pieces of the skyeye-tiny recipe that run without training: band stacking and the
validation's tile selection and water baselines."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from finetune.band_stack import stack_band_files
from finetune.validate_skyeye_tiny import select_tiles
from finetune.validation_scenes import mask_iou, s1_overlay_path, vv_threshold_water
from skyeye.io.raster import RasterImage


def _band(path, value: int, georef: bool) -> None:
    prof = dict(driver="GTiff", width=4, height=3, count=1, dtype="uint16")
    if georef:
        prof.update(crs="EPSG:32633", transform=from_origin(500000, 5800000, 10, 10))
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(np.full((1, 3, 4), value, np.uint16))


def test_stack_band_files_takes_the_georeference_from_the_band_that_has_it(tmp_path):
    _band(tmp_path / "B01.tif", 1, georef=False)
    _band(tmp_path / "B02.tif", 2, georef=True)
    out = stack_band_files(tmp_path, "{band}.tif", ["B01", "B02"], tmp_path / "o" / "s.tif", 0)
    with rasterio.open(out) as ds:
        assert ds.count == 2 and ds.descriptions == ("B01", "B02")
        assert ds.crs.to_epsg() == 32633 and ds.transform.c == 500000 and ds.nodata == 0
        assert ds.read(2).max() == 2
    with pytest.raises(FileNotFoundError, match="B03.tif is missing"):
        stack_band_files(tmp_path, "{band}.tif", ["B01", "B03"], tmp_path / "x.tif")


def test_select_tiles_takes_scenes_in_turn_with_water_tiles_first():
    by_tile = {f"a/{i}.tif": [{"meta": {"scene_id": "big"}}] for i in range(10)}
    by_tile |= {f"b/{i}.tif": [{"meta": {"scene_id": "small"}}] for i in range(2)}
    water = {"a/7.tif", "b/1.tif"}
    got = select_tiles(by_tile, lambda t: t in water, 4)
    assert len(got) == 4
    assert sum(t.startswith("b/") for t in got) == 2  # the small scene is not crowded out
    assert got[:2] == ["a/7.tif", "b/1.tif"]  # water-mask tiles first in each scene
    assert select_tiles(by_tile, lambda t: t in water, 4) == got  # deterministic


def test_vv_threshold_baseline_and_iou():
    vv = np.array([[[-25.0, -10.0], [np.nan, -16.0]]], np.float32)
    img = RasterImage(data=vv, band_names=["VV"])
    base = vv_threshold_water(img, -15.0)
    assert base.tolist() == [[True, False], [False, True]]  # NaN is not water
    assert vv_threshold_water(RasterImage(data=vv, band_names=["HH"]), -15.0) is None
    iou, inter, union = mask_iou(base, np.array([[True, False], [False, False]]))
    assert (iou, inter, union) == (0.5, 1, 2)


def test_the_s1_overlay_never_overwrites_the_s2_one(tmp_path):
    for name in ("skyeye_tiny_water_s2.png", "overlay.png", "water.png"):
        s2 = tmp_path / name
        assert s1_overlay_path(s2) != s2 and s1_overlay_path(s2).parent == tmp_path
    assert s1_overlay_path(tmp_path / "water_s2.png").name == "water_s1.png"
    assert s1_overlay_path(tmp_path / "overlay.png").name == "overlay_s1.png"


def test_water_baselines_pick_bands_by_nearest_wavelength():
    """NDWI uses B08 (0.842 µm), not B07 (0.783, the first band in the NIR window); MNDWI uses
    B11; neither exists without its band."""
    from finetune.validation_scenes import mndwi_water, ndwi_water

    waves = [0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.865, 0.945, 1.375, 1.61, 2.19]
    data = np.full((13, 2, 2), 0.3, dtype=np.float32)
    data[2] = 0.2  # green
    data[6] = 0.1  # B07 darker than green: NDWI with B07 would call everything water
    data[7, 0] = 0.1  # B08 dark only in the top row
    data[11, :, 0] = 0.05  # B11 dark only in the left column
    assert ndwi_water(data, waves).tolist() == [[True, True], [False, False]]
    assert mndwi_water(data, waves).tolist() == [[True, False], [True, False]]
    assert mndwi_water(data[:9], waves[:9]) is None


def test_summary_reports_blind_baseline_shapes_and_mndwi():
    from finetune.validate_skyeye_tiny import summarise

    pres = [
        {"class": "water", "gold": "yes", "pred": "yes", "blind": "yes", "baseline": "yes"},
        {"class": "water", "gold": "no", "pred": None, "blind": "yes", "baseline": "yes"},
    ]
    prop = [{"gold": 20.0, "pred": 25.0, "blind": 50.0, "baseline": 10.0}]
    water = [
        {
            "modality": "multispectral",
            "has_seg": True,
            "iou": (0.5, 1, 2),
            "baseline_iou": (1.0, 2, 2),
            "mndwi_iou": (0.25, 1, 4),
        },
        {
            "modality": "multispectral",
            "has_seg": False,
            "iou": (0.0, 0, 2),
            "baseline_iou": None,
            "mndwi_iou": None,
        },
    ]
    out = summarise({"presence": pres, "proportion": prop, "water": water})
    assert out["presence"]["blind_accuracy"] == 0.5
    assert out["proportion"]["blind_agreement_within_10pts"] == 0.0
    assert out["answer_shape"] == {
        "yes_no_in_shape": 0.5,
        "yes_no_n": 2,
        "number_in_shape": 1.0,
        "number_n": 1,
        "mask_in_shape": 0.5,
        "mask_n": 2,
    }
    block = out["water_tiles"]
    assert block["n_mndwi_tiles"] == 1
    assert block["baseline_mndwi_giou"] == 0.25 and block["model_giou_mndwi_tiles"] == 0.5
    # A hand-drawn tile counts in its own block only, not among the index-labelled ones.
    hand = {**water[0], "scene": "ukis-landsat5", "label_type": "class_raster", "iou": (1.0, 0, 0)}
    out = summarise({"presence": pres, "proportion": prop, "water": [*water, hand]})
    assert out["water_tiles"]["n"] == 2 and out["water_tiles"]["model_giou"] == 0.25
    assert out["water_tiles_hand_labelled"]["n"] == 1
    # Each block names the scenes and labels its numbers are measured against.
    assert "ukis-landsat5" not in out["water_tiles"]["dataset"]
    hand_set = out["water_tiles_hand_labelled"]["dataset"]
    assert "ukis-landsat5" in hand_set and "drawn by people" in hand_set


def test_question_kinds_parse_and_score_against_their_baselines():
    from finetune.validate_skyeye_tiny import summarise
    from finetune.validation_questions import parse_count, parse_letter, parse_yes_no

    assert parse_yes_no("<p>water</p> [SEG] Yes, there is water.") == "yes"
    assert parse_yes_no("<p>water</p> [SEG]. No.") == "no"
    assert parse_yes_no("<p>water</p> [SEG]") is None
    assert parse_letter("B.") == "B" and parse_letter("(C) water") == "C"
    assert parse_letter("<p>forest</p> [SEG]") is None  # a mask is not a letter
    assert parse_count("3.") == 3 and parse_count("There are 12 lakes.") == 12
    assert parse_count("several") is None
    mcq = [
        {"gold": "B", "pred": "B", "blind": "A", "baseline": "A"},
        {"gold": "A", "pred": None, "blind": "A", "baseline": "A"},
    ]
    count = [{"class": "water", "gold": 3, "pred": 2, "blind": None, "baseline": 1}]
    refer = [{"iou": 0.6, "baseline_iou": 0.2, "has_box": True, "box": [0, 0, 1, 1]}]
    hand = {
        "modality": "multispectral",
        "scene": "ukis-landsat5",
        "label_type": "class_raster",
        "has_seg": True,
        "iou": (0.8, 4, 5),
        "baseline_iou": (0.2, 1, 5),
        "mndwi_iou": (0.4, 2, 5),
    }
    out = summarise(
        {
            "presence": [],
            "proportion": [],
            "water": [hand],
            "mcq": mcq,
            "count": count,
            "refer": refer,
        }
    )
    assert out["mcq"]["accuracy"] == 0.5 and out["mcq"]["baseline_accuracy"] == 0.5
    assert out["mcq"]["blind_accuracy"] == 0.5 and out["mcq"]["unparseable"] == 1
    assert out["count"]["accuracy"] == 0.0 and out["count"]["within_1"] == 1.0
    assert out["count"]["baseline_within_1"] == 0.0
    assert (
        out["refer"]["acc_at_0_5"] == 1.0 and out["refer"]["baseline_median_box_acc_at_0_5"] == 0.0
    )
    assert (
        out["answer_shape"]["letter_in_shape"] == 0.5 and out["answer_shape"]["box_in_shape"] == 1.0
    )
    block = out["water_tiles_hand_labelled"]
    assert block["model_giou"] == 0.8 and block["baseline_ndwi_giou"] == 0.2
    assert block["baseline_mndwi_giou"] == 0.4


def test_blind_baseline_asks_each_question_once():
    """Without the image the greedy answer depends on the question alone: repeated templated
    questions reuse the first answer instead of generating again."""
    from finetune.validation_tiles import Asker

    class CountingSession:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def reset(self) -> None:
            pass

        def ask(self, question: str) -> str:
            self.asked.append(question)
            return f"answer {len(self.asked)}"

    asker = Asker.__new__(Asker)
    asker.session, asker._blind = CountingSession(), {}
    assert asker.ask_blind("Is there water?") == "answer 1"
    assert asker.ask_blind("Is there cloud?") == "answer 2"
    assert asker.ask_blind("Is there water?") == "answer 1"
    assert asker.session.asked == ["Is there water?", "Is there cloud?"]


def test_every_hand_labelled_tile_is_asked_for_its_water_mask(tmp_path):
    """The hand-labelled water numbers are measured on every hand-drawn held-out tile, not only
    on the few the tile budget questions in full; hand-drawn rows stay out of other blocks."""
    import json
    from types import SimpleNamespace

    from finetune.validate_skyeye_tiny import summarise
    from finetune.validation_tiles import validate_tiles
    from skyeye.io.rle import encode_mask

    gt = np.zeros((8, 8), bool)
    gt[:3] = True
    lines = []
    for i in range(3):
        path = tmp_path / "images" / f"t{i}.tif"
        path.parent.mkdir(exist_ok=True)
        prof = dict(driver="GTiff", width=8, height=8, count=4, dtype="float32")
        data = np.full((4, 8, 8), 0.2, np.float32)
        data[3, :3] = 0.01  # dark NIR where the water is
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(data)
        lines.append(
            {
                "id": f"rec{i}",
                "images": [
                    {
                        "path": f"images/t{i}.tif",
                        "modality": "multispectral",
                        "band_names": ["B1", "B2", "B3", "B4"],
                        "wavelengths": [0.485, 0.56, 0.66, 0.83],
                    }
                ],
                "turns": [
                    {"role": "user", "text": "<image>\nIs there any water? Answer yes or no."},
                    {
                        "role": "assistant",
                        "text": "<p>water</p> [SEG] Yes.",
                        "masks": [{"seg_index": 0, "image_index": 0, "rle": encode_mask(gt)}],
                    },
                ],
                "meta": {
                    "gen_task": "presence",
                    "scene_id": "ukis-landsat5",
                    "label_type": "class_raster",
                    "classes": ["water"],
                    "answers": [{"class": "water", "answer": "yes"}],
                },
            }
        )
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in lines))

    class FakeAsker:
        session = SimpleNamespace(
            processor=SimpleNamespace(image_processor=SimpleNamespace(sar_wavelength=None))
        )
        asked: list[str] = []

        def ask(self, image, question):
            self.asked.append(question)
            return SimpleNamespace(text="<p>water</p> [SEG] Yes.", masks=[gt.copy()])

        def ask_blind(self, question):
            return SimpleNamespace(text="Yes.", masks=[])

    rows = validate_tiles(FakeAsker(), val, {"presence": {}, "presence_overall": "yes"}, 1, 0.0)
    assert rows["tiles"] == 1 and len(rows["water"]) == 1 and len(rows["water_hand"]) == 2
    report = summarise(rows)
    hand = report["water_tiles_hand_labelled"]
    assert hand["n"] == 3 and hand["model_giou"] == pytest.approx(1.0)
    # Hand-drawn rows, questioned in full or not, are in no other block: the index-labelled
    # optical block has none here.
    assert "water_tiles" not in report


def test_recipe_sections_become_the_stage_options():
    """The driver hands each recipe section to its stage's CLI: booleans as flags (argparse's
    BooleanOptionalAction rejects ``--x=True``), everything else as ``--key=value``."""
    from finetune.mask_stage import main as mask_stage
    from finetune.skyeye_tiny import cli_options

    opts = cli_options({"hires_ratios": 8, "hires_indices": True, "decoder": "hires", "x_y": False})
    assert opts == ["--hires-ratios=8", "--hires-indices", "--decoder=hires", "--no-x-y"]
    # The stage's parser takes them (a rejected option would exit before the data check).
    paths = ["--model", "m", "--data", "/nonexistent.jsonl", "--out", "o"]
    assert mask_stage([*paths, *cli_options({"hires_indices": True, "hires_ratios": 8})]) == 2
