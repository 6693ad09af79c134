"""Yes/no about a class measured on that class's own mask, or not guessed (skyeye.chat.presence,
skyeye.chat.grounded): a scripted session draws the masks, so every verdict is known."""

from __future__ import annotations

import numpy as np
import pytest
from scripted_chat import INPUTS, ScriptedSession, add_mask, five_blobs, image

from skyeye.chat.grounded import measure_answer, rewrites_words
from skyeye.chat.presence import read_presence_question
from skyeye.chat.session import ChatReply
from skyeye.grounding.parse import parse_yes_no


@pytest.mark.parametrize(
    ("question", "words", "phrase", "mainly"),
    [
        ("Is there water in this image?", "water", "water", False),
        ("Is there any cloud shadow in this Sentinel-2 image? Answer yes or no.",
         "cloud shadow", "cloud shadow", False),
        ("Does this Sentinel-2 image contain forest? Answer yes or no.", "forest", "forest", False),
        ("Can you see vegetation in this image?", "vegetation", "vegetation", False),
        ("Is water present in this image?", "water", "water", False),
        ("Are there any clouds?", "clouds", "cloud", False),
        ("Is there a lake?", "lake", "water", False),
        ("Is this image mostly water?", "water", "water", True),
        ("Is this image mainly freeway? Answer yes or no.", "freeway", None, True),
        ("Is this image mainly mobile home park?", "mobile home park", None, True),
    ],
)  # fmt: skip
def test_presence_questions_are_read(question, words, phrase, mainly):
    q = read_presence_question(question)
    assert q is not None and (q.words, q.phrase, q.mainly) == (words, phrase, mainly)


@pytest.mark.parametrize(
    "question",
    [
        "Is there more water in the second image?",
        "Is there any change between the dates?",
        "What share of the image is water?",
        "How many lakes are there?",
        "Describe this image.",
    ],
)
def test_comparisons_and_other_questions_are_not_presence_questions(question):
    assert read_presence_question(question) is None


def test_a_class_the_decoder_does_not_outline_gets_no_guessed_verdict():
    # skyeye-tiny asked "mainly freeway?" drew water and said "No, it is not mainly water."
    session = ScriptedSession({}, image())
    reply = ChatReply(text="<p>water</p> [SEG] No.")
    add_mask(reply, five_blobs(), "water", session.images[0])
    text, note = measure_answer(session, "Is this image mainly freeway?", reply, INPUTS)
    assert text.startswith("I cannot tell whether this image is mainly freeway:")
    assert "water" in text and note == ""  # it says which classes it does outline
    assert parse_yes_no(text) is None and reply.masks == [] and session.forced == []
    assert rewrites_words("Is this image mainly freeway?")  # a readable stream holds it back
    reply = ChatReply(text="<p>ship</p> [SEG] Yes.")
    add_mask(reply, five_blobs(), "ship", session.images[0])
    text, _ = measure_answer(session, "Is there a ship in this image?", reply, INPUTS)
    assert text.startswith("I cannot tell whether this image shows a ship:") and not reply.masks


def test_a_mask_of_another_word_is_replaced_by_the_class_question_mask():
    # "Is there a lake?" answered <p>lake</p> [SEG] No. over a mask of everything: the verdict
    # is the water mask's, drawn by the class question on the image alone.
    session = ScriptedSession({"water": five_blobs()}, image())
    reply = ChatReply(text="<p>lake</p> [SEG] No.")
    add_mask(reply, np.zeros((64, 64), bool), "lake", session.images[0])
    text, _ = measure_answer(session, "Is there a lake in this image?", reply, INPUTS)
    assert session.questions == ["\nSegment all water."]
    assert reply.mask_phrases == ["water"] and reply.masks[0].sum() == five_blobs().sum()
    assert text.startswith("<p>water</p> [SEG] Yes.") and parse_yes_no(text) == "yes"
    # "mainly": the same mask covers under half of the image
    reply = ChatReply(text="<p>lake</p> [SEG] Yes.")
    add_mask(reply, np.ones((64, 64), bool), "lake", session.images[0])
    text, _ = measure_answer(session, "Is this image mainly water?", reply, INPUTS)
    assert text.startswith("<p>water</p> [SEG] No, it is not mainly water.")


def test_the_answers_own_class_mask_is_kept_and_gives_the_verdict():
    session = ScriptedSession({"water": five_blobs()}, image())
    reply = ChatReply(text="<p>water</p> [SEG] Yes.")
    add_mask(reply, np.zeros((64, 64), bool), "water", session.images[0])
    text, _ = measure_answer(session, "Is there water in this image?", reply, INPUTS)
    assert session.forced == []  # no second mask drawn
    assert text.startswith("<p>water</p> [SEG] No, there is no water.")


def test_mainly_a_scene_name_goes_to_the_scene_head_where_the_model_has_one(monkeypatch):
    asked = []

    def verdict(model, tokenizer, tensors, name):
        asked.append(name)
        return f'No: the scene head ranks "{name}" 9th of 31 scene names for this image.'

    monkeypatch.setattr("skyeye.chat.grounded.scene_verdict", verdict)
    session = ScriptedSession({}, image())
    reply = ChatReply(text="<p>water</p> [SEG] No.")
    add_mask(reply, five_blobs(), "water", session.images[0])
    text, _ = measure_answer(session, "Is this image mainly freeway?", reply, INPUTS)
    assert text.startswith('No: the scene head ranks "freeway"') and parse_yes_no(text) == "no"
    assert reply.masks == [] and asked == ["freeway"]  # the unrelated water mask is dropped
    # Presence of an object is not a scene question: still not guessed.
    reply = ChatReply(text="<p>ship</p> [SEG] Yes.")
    text, _ = measure_answer(session, "Is there a ship in this image?", reply, INPUTS)
    assert text.startswith("I cannot tell whether this image shows a ship:") and asked == [
        "freeway"
    ]
