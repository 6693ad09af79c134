"""`python -m skyeye.evaluate --task change`: the chat's change answers on change records (masks,
yes/no, hectares) beside Otsu, the index rules, the most frequent answer and the blind model, in
one run; unreadable records skipped and counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skyeye_testing import build_tiny_llm, change_chat, two_dates, write_tiff

from skyeye.chat.session import ChatSession
from skyeye.errors import UnsafePathError
from skyeye.evaluation.change_eval import change_kind, evaluate_change, question_text
from skyeye.io.rle import encode_mask

DATES = ["2018-05-01", "2020-05-01"]


@pytest.fixture(scope="module")
def llm(tmp_path_factory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("llm"))


def _record(rid: str, question: str, answer: str, mask: np.ndarray, images: list[dict]) -> dict:
    header = f"Image 1 ({DATES[0]}): <image>\nImage 2 ({DATES[1]}): <image>\n"
    return {
        "schema_version": 1, "id": rid, "source": "test", "task": "change", "images": images,
        "turns": [{"role": "user", "text": header + question},
                  {"role": "assistant", "text": answer, "masks": [{"rle": encode_mask(mask)}]}],
        "meta": {"dataset": "lakes", "dates": DATES},
    }  # fmt: skip


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """Two pairs (a lake appeared; nothing changed) with what / any / much records, "show"
    records of a class the chat names (water) and of one it does not (cloud shadow), and one
    record whose image is missing."""
    folder = tmp_path_factory.mktemp("change")
    before, after, _ = two_dates(nodata_rows=0)
    lake = np.isfinite(after.data).all(0) & (after.data[1] > after.data[3])  # NDWI > 0
    area_m2 = float(lake.sum()) * 100.0
    refs = []
    for name, image in (("a", before), ("b", after)):
        write_tiff(image, folder / f"{name}.tif")
        refs.append({"path": f"{name}.tif", "band_names": image.band_names,
                     "wavelengths": image.wavelengths})  # fmt: skip
    still = [refs[0], refs[0]]
    none = np.zeros_like(lake)
    lines = [
        _record("lake:what", "Compare the two images: what is different?",
                f"<p>changed land cover</p> [SEG] About {area_m2 / 1e4:.2f} ha changed.", lake, refs),
        _record("lake:any", "Has anything changed? Answer yes or no.", "<p>x</p> [SEG] Yes.", lake, refs),
        _record("lake:much", "How much changed, in hectares?",
                f"<p>x</p> [SEG] About {area_m2 / 1e4:.2f} ha.", lake, refs),
        _record("still:what", "Compare the two images: what is different?",
                "<p>changed land cover</p> [SEG] Nothing changed.", none, still),
        _record("still:any", "Has anything changed? Answer yes or no.", "<p>x</p> [SEG] No.", none, still),
        _record("gone:any", "Has anything changed? Answer yes or no.", "Yes.", lake,
                [{"path": "missing.tif"}, refs[1]]),
        _record("lake:appeared-water", "Show where water appeared.", "<p>new water</p> [SEG]", lake, refs),
        _record("lake:appeared-cloud shadow", "Show where cloud shadow appeared.",
                "<p>new cloud shadow</p> [SEG]", lake, refs),
    ]  # fmt: skip
    path = folder / "val.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + "{not json\n")
    return path


def test_change_answers_are_measured_beside_their_baselines(llm, records):
    session = change_chat(llm)
    blind = ChatSession(session.model, session.processor, session.settings, require_image=False)
    result = evaluate_change(session, blind, records, records.parent)
    metrics = result["metrics"]
    # The scripted decoder marks where NDWI moved: the lake, exactly.
    lakes = metrics["what"]["lakes"]
    assert lakes["records"] == 2
    assert lakes["model"]["ciou"] == pytest.approx(1.0, abs=0.02)
    assert {"otsu-difference", "water-index", "dndwi-otsu"} <= set(lakes)
    assert metrics["any"]["model"] == 1.0
    assert metrics["any"]["most_frequent"] == 0.5
    assert metrics["much"]["model"]["within_25pct"] == 1.0
    assert set(metrics["what_caption"]) == {"model", "blind"}
    # The blind model is asked the question with no image: it answers in words only.
    assert all(r["blind_answer"] for r in result["rows"]["any"])
    assert len(result["rows"]["what"]) == 2
    # "Show where water appeared." is asked as the chat reads it ("new water") and scored per
    # phrase beside the same baselines; the blind model draws no mask and is not asked.
    shown = metrics["show"]["lakes: new water"]
    assert shown["records"] == 1 and shown["model"]["ciou"] == pytest.approx(1.0, abs=0.02)
    assert {"otsu-difference", "water-index"} <= set(shown)
    assert [r["id"] for r in result["rows"]["show"]] == ["lake:appeared-water"]
    assert "blind_answer" not in result["rows"]["show"][0]
    # A class the chat has no phrase for would be asked as "what changed?": skipped, counted.
    assert result["skipped"] == {
        "missing image": 1, "malformed record": 1, "class the chat does not name": 1,
    }  # fmt: skip


def test_only_the_kinds_asked_for_are_asked(llm, records):
    session = change_chat(llm)
    blind = ChatSession(session.model, session.processor, session.settings, require_image=False)
    result = evaluate_change(session, blind, records, records.parent, kinds=("show",))
    assert set(result["rows"]) == {"show"} and set(result["metrics"]) == {"show"}


def test_record_kinds_and_questions_are_read_from_the_record():
    assert change_kind("oscd:aguasclaras:r0c0:what") == "what"
    assert change_kind("oscd:aguasclaras:r0c0:much-buildings") == "much"
    assert change_kind("star:x:r0c0:appeared-water") == "show"
    assert change_kind("star:x:r0c0:disappeared-cloud shadow") == "show"
    assert change_kind("star:x:r0c0:appeared") is None
    assert change_kind("star:x:r0c0:anything") is None
    text = "Image 1 (2015-09-16): <image>\nImage 2 (2017-10-15): <image>\nWhat changed?"
    assert question_text(text) == "What changed?"
    assert question_text("<image>\n<image>\nShow where water appeared.") == (
        "Show where water appeared."
    )


def test_a_missing_change_file_is_one_line_and_exit_2(tmp_path, capsys):
    from skyeye.evaluation.cli import main

    assert main(["--task", "change", "--data", str(tmp_path / "nope.jsonl"),
                 "--out", str(tmp_path / "r.json")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope.jsonl" in err and "\n" not in err
    assert not (tmp_path / "r.json").exists()


def test_an_unknown_change_kind_is_one_line_and_exit_2(records, tmp_path, capsys):
    from skyeye.evaluation.cli import main

    assert main(["--task", "change", "--data", str(records), "--change-kinds", "what,shows",
                 "--out", str(tmp_path / "r.json")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "shows" in err and "show" in err and "\n" not in err
    assert not (tmp_path / "r.json").exists()


def test_a_change_record_is_read_as_training_reads_it(tmp_path):
    # AirChange's records name the "rgb" sensor: the chat must see the 8-bit photos' /255, as the
    # change decoder did in training, not the per-band stretch their band names alone would get.
    from skyeye.evaluation.change_heldout import read_change_pair
    from skyeye.io.raster import RasterImage

    rng = np.random.default_rng(0)
    refs = []
    for name in ("a", "b"):
        image = RasterImage(
            data=rng.uniform(0, 255, (3, 16, 16)).astype(np.float32),
            band_names=["R", "G", "B"],
            wavelengths=[0.665, 0.56, 0.49],
        )
        write_tiff(image, tmp_path / f"{name}.tif")
        refs.append({"path": f"{name}.tif", "band_names": ["R", "G", "B"],
                     "wavelengths": [0.665, 0.56, 0.49], "sensor": "rgb"})  # fmt: skip
    record = _record("x:what", "What changed?", "<p>x</p> [SEG]", np.zeros((16, 16), bool), refs)
    before, after, mask = read_change_pair(record, tmp_path)
    assert before.sensor == after.sensor == "rgb" and mask.shape == (16, 16)
    record["images"] = [{**ref, "path": "../outside.tif"} for ref in refs]
    with pytest.raises(UnsafePathError):
        read_change_pair(record, tmp_path)


def test_change_kinds_outside_the_change_task_is_one_line_and_exit_2(records, tmp_path, capsys):
    from skyeye.evaluation.cli import main

    assert main(["--task", "vqa", "--data", str(records), "--change-kinds", "show",
                 "--out", str(tmp_path / "r.json")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--change-kinds" in err and "\n" not in err
    assert not (tmp_path / "r.json").exists()
