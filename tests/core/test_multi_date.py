"""Multi-date questions: dated prompts, date order, alignment in the terminal chat."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from skyeye_testing import make_tiny_model

import skyeye.chat.session as session_module
from skyeye.chat.multi_date import prepare_dated_images
from skyeye.chat.session import ChatSession, GenerationSettings
from skyeye.chat.terminal import main
from skyeye.io.image import RasterImage
from skyeye.processing.chat_encoding import encode_conversation
from skyeye.processing.dated_images import dated_image_parts, dated_image_text

RGB = [0.665, 0.56, 0.49]


def _tif(path, x0, date=None, size=24):
    rng = np.random.default_rng(len(str(path)))
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=size,
        width=size,
        count=3,
        dtype="float32",
        crs=CRS.from_epsg(32632),
        transform=from_origin(x0, 5000000, 10, 10),
        nodata=np.nan,
    ) as dst:
        dst.write(rng.uniform(0, 255, (3, size, size)).astype(np.float32))
        for i, name in enumerate("RGB", 1):
            dst.set_band_description(i, name)
        if date:
            dst.update_tags(ACQUISITION_DATE=date)
    return str(path)


def _image(date=None, size=8):
    return RasterImage(
        data=np.ones((3, size, size), np.float32),
        band_names=["R", "G", "B"],
        wavelengths=RGB,
        datetime=date,
    )


def test_prompt_parts_and_record_text_name_the_dates_alike():
    dates = ["2018-05-01", "2020-06-01T10:00:00Z"]
    assert (
        dated_image_text(dates) == "Image 1 (2018-05-01): <image>\nImage 2 (2020-06-01): <image>\n"
    )
    # undated or single images keep the plain form of every existing record
    assert dated_image_text([None, None]) == "<image>\n<image>\n"
    assert dated_image_text(["2018-05-01"]) == "<image>\n"
    assert dated_image_text(["2018-05-01", None]).startswith(
        "Image 1 (2018-05-01): <image>\nImage 2: "
    )


def test_the_chat_turn_encodes_as_the_training_record(tiny_llm_dir):
    _, processor = make_tiny_model(tiny_llm_dir)
    dates = ["2018-05-01", "2020-06-01"]
    kwargs = dict(image_token=processor.image_token, num_image_tokens=4, add_generation_prompt=True)
    chat = [
        {
            "role": "user",
            "content": [*dated_image_parts(dates), {"type": "text", "text": "What changed?"}],
        }
    ]
    record = [{"role": "user", "content": dated_image_text(dates) + "What changed?"}]
    tok = processor.tokenizer
    assert (
        encode_conversation(tok, chat, **kwargs).input_ids
        == encode_conversation(tok, record, **kwargs).input_ids
    )


def test_the_session_names_each_images_date(tiny_llm_dir):
    model, processor = make_tiny_model(tiny_llm_dir)
    session = ChatSession(model.eval(), processor, GenerationSettings(max_new_tokens=2))
    session.add_image(_image("2018-05-01"))
    session.add_image(_image("2020-06-01"))
    "".join(session.stream("what changed?"))
    assert session.history[0]["content"] == (
        "Image 1 (2018-05-01): <image>\nImage 2 (2020-06-01): <image>\nwhat changed?"
    )


def test_user_dates_override_and_must_not_run_backwards():
    out = prepare_dated_images([_image("2001-01-01"), _image()], ["2018-05-01", "2020-06-01"])
    assert [im.datetime for im in out.images] == ["2018-05-01", "2020-06-01"]
    with pytest.raises(ValueError, match="backwards.*earlier image first"):
        prepare_dated_images([_image("2020-06-01"), _image("2018-05-01")])
    with pytest.raises(ValueError, match="one date per image"):
        prepare_dated_images([_image(), _image()], ["2018-05-01"])
    # two undated pictures without a georeference are not a multi-date question: left alone
    photos = prepare_dated_images([_image(size=8), _image(size=9)])
    assert [im.data.shape for im in photos.images] == [(3, 8, 8), (3, 9, 9)]


@pytest.fixture(scope="module")
def tiny_folder(tiny_llm_dir, tmp_path_factory):
    model, processor = make_tiny_model(tiny_llm_dir)
    out = tmp_path_factory.mktemp("model") / "model"
    model.save_pretrained(out, processor=processor)
    return out


def _run(folder, *extra):
    return main(
        [
            "--model",
            str(folder),
            "--max-new-tokens",
            "2",
            "--dtype",
            "float32",
            "--save-masks",
            "",
            "--wavelengths",
            "0.665,0.56,0.49",
            *extra,
        ]
    )


def test_terminal_no_overlap_exits_2_with_one_line(tiny_folder, tmp_path, capsys):
    a, b = _tif(tmp_path / "before.tif", 500000), _tif(tmp_path / "after.tif", 600000)
    code = _run(
        tiny_folder,
        "--image",
        a,
        "--image",
        b,
        "--date",
        "2018-05-01",
        "--date",
        "2020-06-01",
        "--prompt",
        "what changed?",
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error:") and "before.tif" in err[0] and "after.tif" in err[0]


def test_terminal_date_count_and_format_are_checked(tiny_folder, tmp_path, capsys):
    a = _tif(tmp_path / "a.tif", 500000)
    assert (
        _run(tiny_folder, "--image", a, "--image", a, "--date", "2018-05-01", "--prompt", "x") == 2
    )
    assert "one date per image" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        _run(tiny_folder, "--image", a, "--date", "May 2018", "--prompt", "x")
    assert exit_.value.code == 2 and "YYYY-MM-DD" in capsys.readouterr().err


def test_terminal_partial_overlap_is_said_and_the_model_sees_the_dates(
    tiny_folder, tmp_path, capsys, monkeypatch
):
    seen = {}
    real = session_module.load_chat

    def spy(*args, **kwargs):
        seen["session"] = real(*args, **kwargs)
        return seen["session"]

    monkeypatch.setattr(session_module, "load_chat", spy)
    a = _tif(tmp_path / "before.tif", 500000, date="2018-05-01")
    b = _tif(
        tmp_path / "after.tif", 500060
    )  # 6 px east: its first 18 columns are the first image's last 18
    code = _run(
        tiny_folder,
        "--image",
        a,
        "--image",
        b,
        "--date",
        "2018-05-01",
        "--date",
        "2020-06-01",
        "--prompt",
        "what changed?",
    )
    captured = capsys.readouterr()
    assert code == 0 and "overlap on 75%" in captured.err
    session = seen["session"]
    assert session.history[0]["content"].startswith(
        "Image 1 (2018-05-01): <image>\nImage 2 (2020-06-01)"
    )
    # Both cut to the overlap: the model sees only what it compares.
    before, after = session.images
    assert before.transform == after.transform and before.transform.c == 500060
    assert before.data.shape == after.data.shape and before.data.shape[2] == 18
    assert not np.isnan(before.data).any() and not np.isnan(after.data).any()


def test_the_scene_aware_chat_takes_dates_too(tiny_folder, tmp_path, capsys):
    from skyeye.scenechat.terminal import main as scene_main

    a = _tif(tmp_path / "a.tif", 500000)
    code = scene_main(
        [
            "--model",
            str(tiny_folder),
            "--image",
            a,
            "--image",
            a,
            "--date",
            "2020-06-01",
            "--date",
            "2018-05-01",
            "--prompt",
            "x",
            "--wavelengths",
            "0.665,0.56,0.49",
        ]
    )
    assert code == 2 and "give the earlier image first" in capsys.readouterr().err


def test_terminal_sensor_is_given_once_for_all_images_or_once_per_image(
    tiny_folder, tmp_path, capsys
):
    import argparse

    from skyeye.chat.terminal import _image_kwargs

    per_image = argparse.Namespace(sensor=["sentinel-2", "sentinel-1"], wavelengths=[])
    assert [_image_kwargs(per_image, k)["sensor"] for k in (0, 1)] == ["sentinel-2", "sentinel-1"]
    once = argparse.Namespace(sensor=["rgb"], wavelengths=[])
    assert [_image_kwargs(once, k)["sensor"] for k in (0, 1)] == ["rgb", "rgb"]
    a = _tif(tmp_path / "a.tif", 500000)
    args = ("--image", a, "--image", a, "--prompt", "x")
    assert _run(tiny_folder, *args, "--sensor", "rgb", "--sensor", "rgb", "--sensor", "rgb") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: 3 --sensor for 2 --image; give one for all images or one per image"]
