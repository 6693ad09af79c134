"""Two dates of a whole scene (`python -m skyeye.scene --image A --image B`): the after date read
onto the before date's grid window by window, the change mask from the change decoder stitched
into one COG + polygons, per-class transitions measured inside it; bad pairs exit 2 in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from skyeye_testing import (
    CHANGE_WAVES,
    build_tiny_llm,
    change_chat,
    change_grid,
    make_tiny_model,
    write_tiff,
)

from skyeye.io.image import RasterImage
from skyeye.scene.change_infer import ChangeWindowRunner
from skyeye.scene.change_pipeline import analyze_scene_pair
from skyeye.scene.cli import main
from skyeye.scene.pair import PairSource

SIZE = 150
LAND = np.array([40.0, 60.0, 50.0, 160.0])[:, None, None]  # NDWI < 0
WATER = np.array([50.0, 90.0, 40.0, 20.0])[:, None, None]  # NDWI > 0


def _disc(transform: Affine, shape: tuple[int, int], centre_xy, radius_m: float):
    from rasterio.features import rasterize
    from shapely.geometry import Point

    disc = Point(*centre_xy).buffer(radius_m, 256)
    return rasterize([(disc, 1)], out_shape=shape, transform=transform).astype(bool), disc.area


def _image(data: np.ndarray, transform: Affine, day: str) -> RasterImage:
    _, crs = change_grid()
    return RasterImage(data=data.astype(np.float32), band_names=["B", "G", "R", "NIR"],
                       wavelengths=CHANGE_WAVES, crs=crs, transform=transform, datetime=day)  # fmt: skip


@pytest.fixture(scope="module")
def llm(tmp_path_factory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("llm"))


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    """Before: land. After: the same land with a lake of known area at a window border (the
    windows' overlap blends it) and a river that dried up, on a grid shifted by 3.5 px (warped
    onto the before grid) and with an empty strip of rows."""
    folder = tmp_path_factory.mktemp("pair")
    t0, _ = change_grid()
    rng = np.random.default_rng(0)
    before = LAND + rng.uniform(-4, 4, size=(4, SIZE, SIZE))
    river = np.zeros((SIZE, SIZE), bool)
    river[10:16, :] = True
    before = np.where(river, WATER, before)
    shifted = t0 @ Affine.translation(3.5, -2.0)
    centre = t0 @ (30.0, 100.0)
    lake, lake_m2 = _disc(shifted, (SIZE, SIZE), centre, 180.0)
    after = LAND + rng.uniform(-4, 4, size=(4, SIZE, SIZE))
    after = np.where(lake, WATER, after)
    after[:, -3:, :] = np.nan  # no data there: left out, and said
    a = write_tiff(_image(before, t0, "2018-05-01"), folder / "before.tif")
    b = write_tiff(_image(after, shifted, "2020-05-01"), folder / "after.tif")
    return a, b, lake_m2


def _run(llm, files, out, prompt="What changed?", **kw):
    session = change_chat(llm)
    config = dict(window=64, overlap=16, batch=4, progress=False)
    return analyze_scene_pair(files[0], files[1], prompt, out, model=session,
                              dates=["2018-05-01", "2020-05-01"], **config | kw)  # fmt: skip


def test_the_pair_answer_is_in_the_unit_the_question_asks(llm, pair_files, tmp_path):
    from skyeye.chat.measured import format_area

    answer = _run(llm, pair_files, tmp_path / "out", prompt="What changed, in km2?").answer
    change = format_area(answer["change"]["area_m2"], "km²")  # a few ha: ha without a unit
    assert change.endswith(" km²") and f"over {change} (" in answer["answer"]
    water = next(c for c in answer["transitions"]["classes"] if c["name"] == "water")
    gained = format_area(water["gained"]["area_m2"], "km²")
    assert f"water gained {gained}," in answer["answer"]


def test_pair_scene_finds_the_lake_and_its_transitions_add_up(llm, pair_files, tmp_path):
    result = _run(llm, pair_files, tmp_path / "out")
    answer = result.answer
    lake_m2 = pair_files[2]
    change = answer["change"]
    with rasterio.open(result.paths["mask"]) as src:
        mask = src.read(1)
        assert list(src.transform)[:6] == answer["scene"]["transform"]
    # The after grid is 3.5 px east, 2 px north: the overlap is cut out of the before grid.
    assert "only the overlap is compared" in answer["answer"]
    assert answer["scene"]["width"] == SIZE - 3 and answer["scene"]["height"] == SIZE - 2
    assert (mask[-1] == 255).all()  # the after date's empty rows: not compared
    cols = int((mask != 255).any(axis=0).sum())
    # The lake appeared (gained water) and the river dried up (lost water): both are change.
    river_m2 = cols * 6 * 100.0
    assert change["area_m2"] == pytest.approx(lake_m2 + river_m2, rel=0.05)
    water = next(c for c in answer["transitions"]["classes"] if c["name"] == "water")
    assert water["gained"]["area_m2"] == pytest.approx(lake_m2, rel=0.05)
    assert water["lost"]["area_m2"] == pytest.approx(river_m2, rel=0.05)
    # Each change pixel counted at most once per class: gained + lost within the change mask.
    assert int((mask == 1).sum()) == change["pixels"]
    assert water["gained"]["pixels"] + water["lost"]["pixels"] <= change["pixels"]
    assert water["said"] and "water gained" in answer["answer"]
    assert "no data" in answer["answer"] and "water gained" in answer["answer"]
    # uint8 values are no reflectance (no spectral test) and the decoder knows no cloud.
    assert "Clouds could not be masked" in answer["answer"]
    assert answer["transitions"]["cloud_method"] is None
    # The polygons: the lake and the river, their areas those of the mask.
    geo = json.loads(result.paths["geojson"].read_text())
    total = sum(f["properties"]["area_m2"] for f in geo["features"])
    assert total == pytest.approx(change["area_m2"], rel=0.02)
    assert answer["dates"] == ["2018-05-01", "2020-05-01"]
    assert result.windows_total == 9 and result.windows_run == 9  # 3 x 3 windows of 64
    # Resumed: every window from the store, the same outputs.
    again = _run(llm, pair_files, tmp_path / "out")
    assert again.windows_run == 0
    assert again.answer["change"] == change


def test_class_masks_are_drawn_only_where_a_window_sees_change(llm, pair_files, tmp_path):
    """A window without change draws no transition class (its vote is left out of the
    blend), so the transitions equal those of drawing every class in every window."""
    _run(llm, pair_files, tmp_path / "out")
    drawn = []
    for npz in sorted((tmp_path / "out" / ".scene-work").glob("w*.npz")):
        with np.load(npz) as data:
            drawn.append(bool(data["classes_drawn"].all()))
            full = data["prob"].astype(np.float32).max() >= 0.5
            assert drawn[-1] == full
    assert any(drawn) and not all(drawn)


def test_a_white_block_is_left_out_by_the_spectral_test_in_every_window(llm, tmp_path):
    """Clouds by the spectral test on each window's pixels (0-1 reflectance here): a white block
    across window borders is not compared (nodata in change.tif, though the scripted change
    decoder calls it changed), the decoder is asked no cloud, and a window without change runs
    no class pass. A per-band stretch (minmax) gives no reflectance: no test, and it says so."""
    t0, _ = change_grid()
    rng = np.random.default_rng(1)
    before = (LAND + rng.uniform(-4, 4, size=(4, SIZE, SIZE))) / 255
    after = (LAND + rng.uniform(-4, 4, size=(4, SIZE, SIZE))) / 255
    after[:3, 40:90, 40:90] = 0.5  # bright and white in the visible (a cloud by the test) ...
    after[3, 40:90, 40:90] = 0.1  # ... dark in the NIR: NDWI jumps, the scripted decoder's change
    files = (write_tiff(_image(before, t0, "2018-05-01"), tmp_path / "before.tif"),
             write_tiff(_image(after, t0, "2020-05-01"), tmp_path / "after.tif"))  # fmt: skip
    session = change_chat(llm)
    session.processor.image_processor.value_scaling = "reflectance"
    config = dict(window=64, overlap=16, batch=4, progress=False)
    result = analyze_scene_pair(*files, "What changed?", tmp_path / "out", model=session,
                                **config)  # fmt: skip
    answer = result.answer
    with rasterio.open(result.paths["mask"]) as src:
        mask = src.read(1)
    assert (mask[40:90, 40:90] == 255).all() and (np.delete(mask, np.s_[40:90], 0) != 255).all()
    assert answer["change"]["pixels"] == 0 and answer["transitions"]["change_pixels_left_out"] > 0
    assert answer["transitions"]["cloud_method"] == "spectral test"
    assert answer["transitions"]["left_out_share"] == pytest.approx(50 * 50 / SIZE**2)
    assert "(cloud by a spectral test, or no data, in either date) left out" in answer["answer"]
    assert answer["settings"]["classes"] == ["water"]  # no cloud phrase asked
    for npz in sorted((tmp_path / "out" / ".scene-work").glob("w*.npz")):
        with np.load(npz) as data:
            assert "clouds" in data
            changed = data["prob"].astype(np.float32).max() >= 0.5
            assert bool(data["classes_drawn"].any()) == changed
    session.processor.image_processor.value_scaling = "minmax"
    stretched = analyze_scene_pair(*files, "What changed?", tmp_path / "minmax", model=session,
                                   **config).answer  # fmt: skip
    assert stretched["transitions"]["cloud_method"] is None
    assert "Clouds could not be masked" in stretched["answer"]


def test_partial_overlap_is_said_and_only_the_overlap_analysed(llm, pair_files, tmp_path):
    before, _, _ = pair_files
    t0, _ = change_grid()
    half = _image(LAND + np.zeros((4, SIZE, SIZE)), t0 @ Affine.translation(75, 0), "2020-05-01")
    after = write_tiff(half, tmp_path / "half.tif")
    with PairSource(before, after) as pair:
        assert pair.overlap == pytest.approx(0.5, abs=0.01)
        assert pair.grid.width == SIZE - 75 and pair.grid.transform.c == t0.c + 75 * 10.0
        assert "50.0% of the first image" in pair.note
    result = _run(llm, (before, after), tmp_path / "out")
    assert "only the overlap is compared" in result.answer["answer"]
    assert result.answer["scene"]["width"] == SIZE - 75


def test_bad_pairs_exit_2_with_one_line(pair_files, tmp_path, capsys):
    before, after, _ = pair_files
    t0, _ = change_grid()
    far = write_tiff(_image(LAND + np.zeros((4, 20, 20)), t0 @ Affine.translation(5000, 0),
                            "2020-05-01"), tmp_path / "far.tif")  # fmt: skip
    base = ["--image", str(before), "--prompt", "What changed?", "--no-progress"]
    cases = [
        (["--image", str(far), "--out", str(tmp_path / "a")], "do not overlap"),
        (
            [
                "--image",
                str(after),
                "--date",
                "2021-01-01",
                "--date",
                "2020-01-01",
                "--out",
                str(tmp_path / "b"),
            ],
            "dates run backwards",
        ),  # fmt: skip
        (["--image", str(after), "--image", str(far), "--out", str(tmp_path / "c")], "3 --image"),
        (["--date", "2021-01-01", "--out", str(tmp_path / "d")], "--date is for two --image"),
        (
            [
                "--image",
                str(after),
                "--date",
                "May",
                "--date",
                "2020-01-01",
                "--out",
                str(tmp_path / "e"),
            ],
            "not an ISO date",
        ),  # fmt: skip
    ]
    # A radar date against an optical one: no band in common, nothing to compare.
    radar = RasterImage(data=np.full((2, SIZE, SIZE), -12.0, np.float32), band_names=["VV", "VH"],
                        crs=change_grid()[1], transform=t0, datetime="2020-05-01",
                        sensor="sentinel-1")  # fmt: skip
    sar = write_tiff(radar, tmp_path / "sar.tif")
    cases.append((["--image", str(sar), "--out", str(tmp_path / "f")], "share no band"))
    cases.append(
        (["--image", str(after), "--change-context", "1.5", "--out", str(tmp_path / "g")],
         "--change-context must be a share in [0, 1]")
    )  # fmt: skip
    # One sensor per date, as the chat takes them: refused, not the last one silently kept.
    cases.append(
        (["--image", str(after), "--sensor", "naip", "--sensor", "rgb", "--out",
          str(tmp_path / "h")], "--sensor given 2 times")
    )  # fmt: skip
    for extra, said in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err
        assert not (tmp_path / "a" / "change.tif").exists()


def test_a_model_without_a_change_decoder_is_refused(llm, pair_files, tmp_path):
    from skyeye.errors import SceneError

    with pytest.raises(SceneError, match="no change decoder"):
        analyze_scene_pair(pair_files[0], pair_files[1], "What changed?", tmp_path / "o",
                           model=change_chat(llm, change=False), window=64, overlap=16,
                           progress=False)  # fmt: skip


def test_forced_masks_with_the_prompt_cache_equal_predict_masks(llm):
    """The window runner's forward (the prompt's text before the images from a cache computed
    once) gives the masks `predict_masks` gives from the whole prompt."""
    torch.manual_seed(0)
    model, processor = make_tiny_model(
        llm, use_mask_head=True, mask_head_hidden_size=32, mask_decoder="hires",
        mask_change=True, image_processor_kwargs={"hires_size": 32, "value_scaling": "uint8"},
    )  # fmt: skip
    model.eval()
    from skyeye.chat.session import ChatSession, GenerationSettings

    session = ChatSession(model, processor, GenerationSettings(system_prompt="You look at maps."))
    t0, _ = change_grid()
    rng = np.random.default_rng(1)
    pairs = [
        tuple(_image(rng.uniform(0, 255, (4, 32, 32)), t0, d) for d in ("2018-05-01", "2020-05-01"))
        for _ in range(3)
    ]
    runner = ChangeWindowRunner(session, "What changed?", ["2018-05-01", "2020-05-01"],
                                ["water", "cloud"], always=["cloud"])  # fmt: skip
    batch = runner.prepare(pairs)  # type: ignore[arg-type]
    assert runner._prefix == {}
    entries = [(2 * i, 2 * i + 1) for i in range(3)]
    with torch.no_grad():
        cached, _ = runner._forced("pair", 3, batch.inputs, runner._change_ids, entries)
        ids = runner._prompt_ids["pair"].repeat(3, 1)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **batch.inputs}
        whole, _ = model.predict_masks(inputs, runner._change_ids.repeat(3, 1), entries)
    assert runner._prefix["pair"][0] > 0  # the system prompt came from the cache
    torch.testing.assert_close(cached, whole, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(cached[0], cached[1])


def test_one_run_per_output_folder_for_pairs_too(llm, pair_files, tmp_path):
    from skyeye.errors import RunLockedError
    from skyeye.scene.lock import RunLock

    with RunLock(tmp_path / "out", "another"), pytest.raises(RunLockedError, match="in use"):
        _run(llm, pair_files, tmp_path / "out")
    assert not (tmp_path / "out" / "answer.json").exists()


def test_class_masks_are_asked_word_for_word_as_the_chat_asks_them(llm):
    """Each date's class masks equal the chat's (`transitions.class_masks`) on the same image:
    a [SEG] state reads every token of the question (a missing newline moved the cloud masks
    of a real window from 18.2 % to 14.0 %)."""
    from skyeye.chat.session import ChatSession, GenerationSettings
    from skyeye.chat.transitions import class_masks

    torch.manual_seed(0)
    model, processor = make_tiny_model(
        llm, use_mask_head=True, mask_head_hidden_size=32, mask_decoder="hires",
        mask_change=True, image_processor_kwargs={"hires_size": 32, "value_scaling": "uint8"},
    )  # fmt: skip
    model.eval()
    session = ChatSession(model, processor, GenerationSettings(system_prompt="You look at maps."))
    t0, _ = change_grid()
    rng = np.random.default_rng(2)
    pair = tuple(
        _image(rng.uniform(0, 255, (4, 32, 32)), t0, d) for d in ("2018-05-01", "2020-05-01")
    )
    phrases = ["water", "cloud"]
    runner = ChangeWindowRunner(session, "What changed?", ["2018-05-01", "2020-05-01"],
                                phrases, always=phrases)  # fmt: skip
    batch = runner.prepare([pair])  # type: ignore[list-item]
    with torch.no_grad():
        scene = runner._class_masks(batch.inputs, 1, batch.grids, [True])[0]
    session.add_image(pair[1])
    asked = []

    class Recorder:  # the chat's processor, keeping the conversations it encodes
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, messages, *args, **kwargs):
            asked.append(messages)
            return self.inner(messages, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    session.processor = Recorder(processor)  # type: ignore[assignment]
    chat = class_masks(session, 0, phrases)
    assert asked == [runner._class_messages]  # the same question, part for part
    for k, phrase in enumerate(phrases):
        assert (scene[k] == chat[phrase]).mean() > 0.995, phrase
