"""The scene head: built only when the config asks, saved and loaded strictly, and the chat answers
a scene multiple-choice question with the option it scores highest (other questions by
likelihood)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skyeye_testing import make_tiny_model

from skyeye.chat.choices import choice_answer
from skyeye.chat.scene_choice import (
    is_scene_question,
    scene_choice,
    scene_name,
    scene_name_ids,
    scene_verdict,
    sees_visible,
)
from skyeye.errors import CheckpointKeyError
from skyeye.grounding.options import parse_options
from skyeye.hub.card import build_card
from skyeye.io.raster import RasterImage
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.modeling.scene_head import SceneHead, scene_scores

QUESTION = "Which scene class best describes this image?\nA. forest\nB. lake\nC. city"


@pytest.fixture
def scene_model(tiny_llm_dir):
    return make_tiny_model(tiny_llm_dir, scene_head=True, scene_head_dim=8)


def _image() -> RasterImage:
    return RasterImage(
        data=np.random.default_rng(0).uniform(0, 255, (3, 16, 16)).astype(np.float32),
        band_names=["R", "G", "B"],
        wavelengths=[0.665, 0.56, 0.49],
    )


def _inputs(processor, question: str = QUESTION):
    conv = [{"role": "user", "content": f"<image>\n{question}"}]
    return processor(conv, [_image()], add_generation_prompt=True)


def _prefer(model, processor, name: str) -> None:
    """Script the head to score ``name`` highest: every image maps to the first axis of the
    shared space, and only ``name``'s embedding row points along it."""
    head, dim = model.scene_head, model.config.scene_head_dim
    table = model.language_model.get_input_embeddings().weight
    with torch.no_grad():
        head.image_proj.weight.zero_()
        head.image_proj.bias.zero_()
        head.image_proj.bias[0] = 1.0
        head.text_proj.weight.zero_()
        head.text_proj.bias.zero_()
        head.text_proj.weight[:, :dim] = torch.eye(dim)
        for ids in scene_name_ids(processor.tokenizer, ["forest", "lake", "city"]):
            table[ids, :dim] = 0.0
            table[ids, 1] = 1.0  # off the image's axis
        (target,) = scene_name_ids(processor.tokenizer, [name])
        table[target, :dim] = 0.0
        table[target, 0] = 1.0


def test_the_head_is_built_saved_and_loaded_only_when_asked(tmp_path, tiny_llm_dir, scene_model):
    model, processor = scene_model
    assert isinstance(model.scene_head, SceneHead)
    plain, plain_processor = make_tiny_model(tiny_llm_dir)
    assert plain.scene_head is None
    plain.save_pretrained(tmp_path / "plain", processor=plain_processor)
    assert "scene_head" not in json.loads((tmp_path / "plain" / "config.json").read_text())

    with torch.no_grad():
        model.scene_head.feature_mean.fill_(0.5)
    model.save_pretrained(tmp_path / "scene", processor=processor)
    config = json.loads((tmp_path / "scene" / "config.json").read_text())
    assert config["scene_head"] is True and config["scene_head_dim"] == 8
    loaded = SkyEyeForConditionalGeneration.from_pretrained(tmp_path / "scene")
    for key, value in model.scene_head.state_dict().items():
        assert torch.equal(loaded.scene_head.state_dict()[key], value), key
    assert "| scene head | width 8" in build_card(tmp_path / "scene").text  # the card says so

    # A folder with a scene head read by a config without one fails loudly on its keys.
    config.pop("scene_head")
    (tmp_path / "scene" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointKeyError, match="scene_head"):
        SkyEyeForConditionalGeneration.from_pretrained(tmp_path / "scene")


def test_names_are_the_mean_of_their_token_rows():
    table = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    got = SceneHead.embed_names([[0, 2], [3]], table)
    assert torch.equal(got, torch.tensor([[3.0, 4.0, 5.0], [9.0, 10.0, 11.0]]))
    with pytest.raises(ValueError, match="at least one token"):
        SceneHead.embed_names([[]], table)


def test_scene_questions_are_told_from_other_choices():
    assert is_scene_question(parse_options(QUESTION))
    assert is_scene_question(parse_options("What is the land cover? (A) sea or lake (B) pasture"))
    assert is_scene_question(parse_options("What kind of area is this?\nA. airport\nB. beach"))
    # Counts, years and long descriptions are options, not names.
    assert not is_scene_question(parse_options("Which class has how many planes? A. 3 B. 4"))
    assert not is_scene_question(parse_options("How many ships are there?\nA. two\nB. three"))
    long = "Which scene best describes it?\nA. a " + "very " * 8 + "long text\nB. river"
    assert not is_scene_question(parse_options(long))


def test_the_chat_answers_a_scene_question_with_the_option_the_head_prefers(scene_model):
    model, processor = scene_model
    model.eval()
    inputs = _inputs(processor)
    choice = parse_options(QUESTION)
    for name, letter in (("lake", "B"), ("city", "C")):
        _prefer(model, processor, name)
        assert scene_choice(model, processor.tokenizer, inputs, choice) == "ABC".index(letter)
        got = choice_answer(model, processor.tokenizer, inputs, QUESTION, "text", scene_head=True)
        assert got == f"{letter}. {name}"
    ids = scene_name_ids(processor.tokenizer, ["forest", "lake", "city"])
    scores = scene_scores(model, inputs["pixel_values"], inputs["wavelengths"], ids)
    assert scores.shape == (1, 3) and int(scores[0].argmax()) == 2


def test_without_a_head_or_an_image_the_likelihood_scorer_answers(tiny_llm_dir, scene_model):
    model, processor = scene_model
    plain, plain_processor = make_tiny_model(tiny_llm_dir)
    choice = parse_options(QUESTION)
    assert scene_choice(plain, plain_processor.tokenizer, _inputs(plain_processor), choice) is None
    blind = processor([{"role": "user", "content": QUESTION}], [], add_generation_prompt=True)
    assert scene_choice(model, processor.tokenizer, blind, choice) is None
    count = "How many lakes?\nA. 1\nB. 2"
    assert (
        scene_choice(model, processor.tokenizer, _inputs(processor, count), parse_options(count))
        is None
    )
    with pytest.raises(ValueError, match="no scene head"):
        scene_scores(plain, [torch.zeros(3, 16, 16)], [torch.zeros(3)], [[1]])


def test_mainly_a_scene_name_is_answered_by_its_rank_among_the_trained_names(scene_model):
    model, processor = scene_model
    model.eval()
    model.config.scene_names, model.config.scene_top_k = ["forest", "lake", "city"], 1
    tensors = {k: v[0] for k, v in processor.image_features([_image()]).items()}
    _prefer(model, processor, "city")
    said = scene_verdict(model, processor.tokenizer, tensors, "city")
    assert (
        said
        == 'Yes: the scene head ranks "city" 1st of 3 scene names for this image (yes within the first 1).'
    )
    said = scene_verdict(model, processor.tokenizer, tensors, "lake")
    assert said.startswith('No: the scene head ranks "lake" ') and "of 3 scene names" in said
    model.config.scene_names = None  # a head saved without its names cannot rank
    assert scene_verdict(model, processor.tokenizer, tensors, "city") is None


def test_names_lose_their_article_and_images_without_visible_bands_are_not_asked(scene_model):
    model, processor = scene_model
    model.eval()
    assert scene_name(" A lake. ") == "lake" and scene_name("The City") == "city"
    model.config.scene_names, model.config.scene_top_k = ["forest", "lake", "city"], 1
    tensors = {k: v[0] for k, v in processor.image_features([_image()]).items()}
    _prefer(model, processor, "city")
    # "Is this image mainly a city?" ranks "city" among the 3 names, not a 4th, "a city".
    assert scene_verdict(model, processor.tokenizer, tensors, "a city").startswith(
        'Yes: the scene head ranks "city" 1st of 3 scene names'
    )
    # The head learnt from RGB photos: a SAR band (its placeholder wavelength) or NIR alone is
    # outside it, and the likelihood scorer / the plain sentence answer instead.
    sar = RasterImage(
        data=np.random.default_rng(1).uniform(0, 1, (1, 16, 16)).astype(np.float32),
        band_names=["VV"],
        wavelengths=[5.405],
    )
    sar_tensors = {k: v[0] for k, v in processor.image_features([sar]).items()}
    assert not sees_visible(sar_tensors["wavelengths"]) and sees_visible([0.49, 0.842])
    assert scene_verdict(model, processor.tokenizer, sar_tensors, "city") is None
    conv = [{"role": "user", "content": f"<image>\n{QUESTION}"}]
    inputs = processor(conv, [sar], add_generation_prompt=True)
    assert scene_choice(model, processor.tokenizer, inputs, parse_options(QUESTION)) is None
