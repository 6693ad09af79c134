"""The skyeye-tiny validation: `finetune.validate_skyeye_tiny` names the card's splits and tasks,
`skyeye.evaluation` asks, parses and scores; the card's rows are `python -m skyeye.evaluate`'s."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from skyeye_testing import make_tiny_model
from validation_data import water_gt, write_split

from skyeye.evaluation.heldout import (
    HELD_OUT_TASKS,
    Asker,
    select_tiles,
    summarise,
    validate_tiles,
)
from skyeye.evaluation.metrics import iou_summary, mask_iou
from skyeye.evaluation.unseen_scenes import s1_overlay_path
from skyeye.grounding.label_rules import index_threshold_mask, vv_threshold_mask
from skyeye.grounding.parse import parse_count, parse_letter, parse_yes_no
from skyeye.io.raster import RasterImage

PRIORS = {
    "presence": {},
    "presence_overall": "yes",
    "proportion": {},
    "proportion_overall": 10.0,
    "count": {},
    "count_overall": 1,
    "mcq_letter": "A",
    "box": {},
    "box_overall": [0.0, 0.0, 1.0, 1.0],
}


class FakeAsker:
    """Answers every question with ``answer`` (and the water mask when it has a [SEG])."""

    def __init__(self, answer: str = "<p>water</p> [SEG] Yes.") -> None:
        self.answer = answer
        self.asked: list[str] = []
        self.session = SimpleNamespace(
            processor=SimpleNamespace(image_processor=SimpleNamespace(sar_wavelength=None))
        )

    def ask(self, image, question):
        self.asked.append(question)
        masks = [water_gt()] if "[SEG]" in self.answer else []
        return SimpleNamespace(text=self.answer, masks=masks)

    def ask_blind(self, question):
        return SimpleNamespace(text="Yes.", masks=[])


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
    base = vv_threshold_mask(RasterImage(data=vv, band_names=["VV"]), -15.0)
    assert base.tolist() == [[True, False], [False, True]]  # NaN is not water
    assert vv_threshold_mask(RasterImage(data=vv, band_names=["HH"]), -15.0) is None
    assert mask_iou(base, np.array([[True, False], [False, False]])) == (0.5, 1, 2)


def test_ciou_of_empty_unions_is_one_everywhere():
    """An empty prediction of an empty label is perfect: cIoU 1, as gIoU (the validation's own
    copy said 0.0)."""
    empty = mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool))
    assert empty == (1.0, 0, 0)
    assert iou_summary([empty, empty]) == {"n": 2, "giou": 1.0, "ciou": 1.0}
    row = {"modality": "multispectral", "has_seg": False, "iou": empty, "baseline_iou": empty}
    block = summarise({"water": [row]}, ["refseg"])["water_tiles"]
    assert block["model_ciou"] == 1.0 and block["baseline_ndwi_ciou"] == 1.0


def test_the_s1_overlay_never_overwrites_the_s2_one(tmp_path):
    for name in ("skyeye_tiny_water_s2.png", "overlay.png", "water.png"):
        s2 = tmp_path / name
        assert s1_overlay_path(s2) != s2 and s1_overlay_path(s2).parent == tmp_path
    assert s1_overlay_path(tmp_path / "water_s2.png").name == "water_s1.png"
    assert s1_overlay_path(tmp_path / "overlay.png").name == "overlay_s1.png"


def test_water_baselines_pick_bands_by_nearest_wavelength():
    """NDWI uses B08 (0.842 µm), not B07 (0.783, the first band in the NIR window); MNDWI uses
    B11; neither exists without its band."""
    waves = [0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.865, 0.945, 1.375, 1.61, 2.19]
    data = np.full((13, 2, 2), 0.3, dtype=np.float32)
    data[2] = 0.2  # green
    data[6] = 0.1  # B07 darker than green: NDWI with B07 would call everything water
    data[7, 0] = 0.1  # B08 dark only in the top row
    data[11, :, 0] = 0.05  # B11 dark only in the left column
    img = RasterImage(data=data, band_names=[f"b{i}" for i in range(13)], wavelengths=waves)
    assert index_threshold_mask(img, "ndwi").tolist() == [[True, True], [False, False]]
    assert index_threshold_mask(img, "mndwi").tolist() == [[True, False], [True, False]]
    short = RasterImage(data=data[:9], band_names=img.band_names[:9], wavelengths=waves[:9])
    assert index_threshold_mask(short, "mndwi") is None


@pytest.mark.parametrize(
    ("answer", "letter"),
    # the finetune copy read A, B and None: an article is no letter, two letters are ambiguous
    [("A large harbour with boats.", None), ("B or C", None), ("The answer is C.", "C")],
)
def test_the_card_reads_letters_with_the_one_parser(tmp_path, answer, letter):
    val, _ = write_split(tmp_path)
    rows = validate_tiles(FakeAsker(answer), val, PRIORS, 4, tasks=["mcq"])
    assert {r["pred"] for r in rows["mcq"]} == {letter}
    assert parse_letter(answer) == letter


def test_question_kinds_parse_the_looks_first_grammar():
    assert parse_yes_no("<p>water</p> [SEG] Yes, there is water.") == "yes"
    assert parse_yes_no("<p>water</p> [SEG]. No.") == "no"
    assert parse_yes_no("<p>water</p> [SEG]") is None
    note = "(measured on the mask: water 4.5 ha, 12.3% of the valid pixels)"
    assert parse_yes_no(f"<p>water</p> [SEG] No. {note}") == "no"
    assert parse_letter("B.") == "B" and parse_letter("(C) water") == "C"
    assert parse_letter("<p>forest</p> [SEG]") is None  # a mask is not a letter
    assert parse_count("3.") == 3 and parse_count("There are 12 lakes.") == 12
    assert parse_count("several") is None


def test_summary_blocks_baselines_shapes_and_hand_labelled_rows(tmp_path):
    """Every block stands beside its baselines; hand-drawn tiles count in their own block only,
    and every hand-drawn tile is asked for its water mask, not only those in the tile budget."""
    val, _ = write_split(tmp_path)
    asker = FakeAsker()
    rows = validate_tiles(asker, val, PRIORS, 3)
    assert rows["tiles"] == 3 and len(rows["water_hand"]) == 1
    out = summarise(rows)
    assert list(out) == [
        "presence",
        "proportion",
        "water_tiles",
        "water_tiles_hand_labelled",
        "mcq",
        "count",
        "refer",
        "answer_shape",
    ]
    pres = out["presence"]
    # "Yes." to water (gold yes) and forest (gold no); majority and blind say yes
    assert pres["accuracy"] == 0.5 and pres["blind_accuracy"] == 0.5
    assert pres["baseline_majority_accuracy"] == 0.5 and pres["unparseable"] == 0
    assert out["proportion"]["unparseable"] == out["proportion"]["n"]
    water = out["water_tiles"]
    assert water["model_giou"] == 1.0 and water["baseline_ndwi_giou"] == 1.0  # NIR dark there
    assert "n_mndwi_tiles" not in water  # no SWIR band: no MNDWI baseline
    assert "ukis-landsat5" not in water["dataset"]
    hand = out["water_tiles_hand_labelled"]
    assert hand["n"] == 2 and hand["model_giou"] == pytest.approx(1.0)
    assert "drawn by people" in hand["dataset"]
    assert out["mcq"]["accuracy"] == 0.0 and out["mcq"]["unparseable"] == out["mcq"]["n"]
    # the random-letter baseline: one of the options the question lists (A-C here), seeded
    assert {r["random_letter"] for r in rows["mcq"]} <= {"A", "B", "C"}
    assert out["mcq"]["random_letter_accuracy"] == np.mean(
        [r["random_letter"] == r["gold"] for r in rows["mcq"]]
    )
    assert [r["random_letter"] for r in validate_tiles(FakeAsker(), val, PRIORS, 3)["mcq"]] == [
        r["random_letter"] for r in rows["mcq"]
    ]
    assert out["refer"]["acc_at_0_5"] == 0.0 and out["answer_shape"]["mask_in_shape"] == 1.0
    assert out["answer_shape"]["box_in_shape"] == 0.0


def test_blind_baseline_asks_each_question_once():
    class CountingSession:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def reset(self) -> None:
            pass

        def ask(self, question: str) -> str:
            self.asked.append(question)
            return f"answer {len(self.asked)}"

    asker = Asker(CountingSession())
    assert asker.ask_blind("Is there water?") == "answer 1"
    assert asker.ask_blind("Is there cloud?") == "answer 2"
    assert asker.ask_blind("Is there water?") == "answer 1"
    assert asker.session.asked == ["Is there water?", "Is there cloud?"]


def test_validation_and_skyeye_evaluate_give_the_same_rows(tmp_path, tiny_llm_dir):
    """The card's rows and blocks are `python -m skyeye.evaluate --train`'s, task by task."""
    from finetune.validate_skyeye_tiny import main as validate
    from skyeye.evaluation.cli import main as evaluate

    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    folder = tmp_path / "model"
    model.save_pretrained(folder, processor=processor)
    val, train = write_split(tmp_path)
    card = tmp_path / "card.json"
    common = ["--model", str(folder), "--val", str(val), "--train", str(train)]
    assert validate([*common, "--out", str(card), "--max-tiles", "3", "--no-text-check"]) == 0
    card_report = json.loads(card.read_text())
    # the card's settings: bfloat16, 40 new tokens
    args = ["--model", str(folder), "--data", str(val), "--train", str(train), "--limit", "3"]
    args += ["--dtype", "bfloat16", "--max-new-tokens", "40", "--quiet"]
    for task in HELD_OUT_TASKS:
        out = tmp_path / f"{task}.json"
        assert evaluate([*args, "--task", task, "--out", str(out)]) in (0, 1)
        report = json.loads(out.read_text())
        for key, task_rows in report["rows"].items():
            assert task_rows == card_report["rows"][key], (task, key)
        for name, block in report["metrics"].items():
            if name != "answer_shape":
                assert block == card_report["tasks"][name], (task, name)


def test_the_unseen_s2_reference_is_the_training_label_rule():
    """The card's S2 reference is from_rasters' water label, pixel for pixel (the validation's
    float64 copy of the rule disagreed with it on 4 pixels of this example)."""
    from pathlib import Path

    from instruct_data.from_rasters.spectral import index_masks
    from skyeye.evaluation.unseen_scenes import example_scenes
    from skyeye.io.raster import read_raster

    scene = Path(__file__).resolve().parents[2] / "examples" / "sentinel2_berlin_l1c.tif"
    label = index_masks(read_raster(str(scene), max_size=512), ["water"], 1e-4)[0]["water"]

    class LabelAsker(FakeAsker):
        def ask(self, image, question):
            return SimpleNamespace(text="<p>water</p> [SEG] Yes.", masks=[label])

    asker = LabelAsker()
    asker.session.settings = SimpleNamespace(read_size=512)
    (s2,) = example_scenes(
        asker,
        s2_scene=scene,
        s1_scene=None,
        s2_scale=1e-4,
        osm_water_path=None,
        ndwi_threshold=0.0,
        vv_db_threshold=-15.0,
        sar_water_db=-18.0,
        overlay=None,
    )
    assert s2["model_iou"] == 1.0 and s2["reference_share"] == pytest.approx(label.mean())
    assert s2["baseline_iou"] < 1.0  # NDWI > 0 alone is not the rule (no darkness test)


@pytest.mark.slow
def test_skyeye_tiny_card_rows_are_skyeye_evaluates(tmp_path):
    """The embedded skyeye-tiny on a few synthetic tiles: the validation's presence rows and block
    are `python -m skyeye.evaluate --train --task presence`'s (the real LLM, the card's settings)."""
    from finetune.validate_skyeye_tiny import main as validate
    from skyeye.evaluation.cli import main as evaluate

    val, train = write_split(tmp_path)
    card = tmp_path / "card.json"
    common = ["--model", "skyeye-tiny", "--val", str(val), "--train", str(train)]
    assert validate([*common, "--out", str(card), "--max-tiles", "2", "--no-text-check"]) == 0
    card_report = json.loads(card.read_text())
    out = tmp_path / "presence.json"
    args = ["--model", "skyeye-tiny", "--data", str(val), "--train", str(train), "--limit", "2"]
    args += ["--dtype", "bfloat16", "--max-new-tokens", "40", "--quiet", "--task", "presence"]
    assert evaluate([*args, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rows"]["presence"] == card_report["rows"]["presence"]
    assert report["metrics"]["presence"] == card_report["tasks"]["presence"]
    assert all(r["answer"] for r in report["rows"]["presence"])  # the real LLM says something
