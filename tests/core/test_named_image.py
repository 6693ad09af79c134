"""A question naming one of several images is answered on that image alone
(`skyeye.chat.named_image`)."""

from __future__ import annotations

from skyeye_testing import change_chat, two_dates

from skyeye.chat.multi_date import prepare_dated_images
from skyeye.chat.named_image import named_image


def test_the_image_a_question_names_is_read_by_one_rule():
    dates = ["2009-08-18", "2020-08-31"]
    assert named_image("Is there water in the first image?", dates) == 0
    assert named_image("How much water is there in image 1, in hectares?", dates) == 0
    assert named_image("Is there water in the 2009 image?", dates) == 0
    assert named_image("What covered the place in 2009?", dates) == 0
    assert named_image("Is there water in the earlier one?", dates) == 0
    assert named_image("Is there water in the second image?", dates) == 1
    assert named_image("Is there water in the last image?", dates) == 1
    assert named_image("Segment the water in the before image.", dates) == 0
    # None: no image named, several named or compared, a year both or neither have, an image
    # that is not there
    for prompt in ("Is there water?", "Is there more water in the first image than the second?",
                   "Is there water in the first image or the second?",
                   "Was the river wider in the first image?",
                   "Is there water in the 2015 image?", "Is there water in image 3?"):  # fmt: skip
        assert named_image(prompt, dates) is None, prompt
    assert named_image("in 2020", ["2020-01-01", "2020-06-01"]) is None


def test_a_question_about_the_first_date_is_answered_on_it(tiny_llm_dir):
    session = change_chat(tiny_llm_dir)  # the decoder draws water where NDWI > 0; a lake after
    before, after, _ = two_dates()
    for image in prepare_dated_images([before, after]).images:
        session.add_image(image)
    first = session.ask("Is there water in the first image?")
    assert first.mask_images == [0] and first.masks[0].sum() == 0  # no lake on the first date
    assert first.text.endswith("On image 1 of 2 (2018-05-01).")
    second = session.ask("Is there water in the 2020 image?")  # the last: the usual path
    assert second.mask_images == [1] and second.masks[0].sum() > 0
    assert second.text.endswith("On image 2 of 2 (2020-05-01).")
    assert len(session.history) == 4  # both turns recorded in the conversation


def test_a_date_token_of_slash_image_is_not_read_as_a_wavelength():
    from skyeye.chat.terminal import _is_wavelength

    assert _is_wavelength("0.665") and _is_wavelength("5.405")
    assert not _is_wavelength("20200831") and not _is_wavelength("2020-08-31")
