"""Multiple choice by option likelihood (skyeye.chat.choices): the cached, batched scoring equals
scoring each option on its own, and it picks the option a scripted model prefers."""

from __future__ import annotations

import torch

from skyeye.chat.choices import score_choices
from skyeye.grounding.options import format_choice, parse_options

QUESTION = "What covers most of the image?\nA. forest\nB. open water\nC. a lake\nD. farmland"


def _inputs(model, processor, rgb_image):
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    ]
    return processor(conversation, [rgb_image], add_generation_prompt=True)


def test_batched_scores_equal_each_option_scored_alone(tiny_model, rgb_image):
    model, processor = tiny_model
    model.eval()
    inputs = _inputs(model, processor, rgb_image)
    choice = parse_options(QUESTION)
    scores = score_choices(model, processor.tokenizer, inputs, choice)
    tok = processor.tokenizer
    for k, option in enumerate(choice.options):
        text = format_choice(option)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        full = torch.cat([inputs["input_ids"], torch.tensor([ids])], dim=1)
        with torch.no_grad():
            logits = (
                model.model(
                    full,
                    attention_mask=torch.ones_like(full),
                    pixel_values=inputs["pixel_values"],
                    wavelengths=inputs["wavelengths"],
                )
                .logits[0]
                .float()
            )
        logp = torch.log_softmax(logits, dim=-1)
        start = inputs["input_ids"].shape[1]
        total = sum(float(logp[start - 1 + t, i]) for t, i in enumerate(ids))
        assert abs(scores.text[k] - total / len(text)) < 1e-4
        letter = tok(option.letter, add_special_tokens=False)["input_ids"][0]
        assert abs(scores.letter[k] - float(logp[start - 1, letter])) < 1e-4


def test_the_option_a_scripted_model_prefers_wins(tiny_model, rgb_image):
    model, processor = tiny_model
    model.eval()
    tok = processor.tokenizer
    choice = parse_options(QUESTION)
    wanted = tok(format_choice(choice.options[2]), add_special_tokens=False)["input_ids"]
    lm = model.language_model
    original = lm.forward

    def prefers_c(*args, **kwargs):
        # A model that wants to say "C. a lake": each position leans to C's next token (the
        # prompt's last position to its first, the options' position t to its token t + 1).
        out = original(*args, **kwargs)
        if out.logits.shape[1] == 1:
            out.logits[:, -1, wanted[0]] += 8.0
        else:
            for t in range(min(out.logits.shape[1], len(wanted) - 1)):
                out.logits[:, t, wanted[t + 1]] += 8.0
        return out

    lm.forward = prefers_c
    scores = score_choices(model, tok, _inputs(model, processor, rgb_image), choice)
    assert choice.options[scores.best("text")].letter == "C"
    # Letter scoring reads only the first answer token; the tiny test tokenizer spells most
    # capitals with one unknown token, so it is checked with the real tokenizer (slow test).


def test_the_chat_answers_multiple_choice_with_an_option_and_plain_questions_as_before(
    tiny_model, rgb_image
):
    from skyeye.chat.session import ChatSession, GenerationSettings

    model, processor = tiny_model
    model.eval()
    session = ChatSession(model, processor, GenerationSettings(max_new_tokens=4))
    session.add_image(rgb_image)
    reply = session.ask(QUESTION)
    options = {format_choice(o) for o in parse_options(QUESTION).options}
    assert reply.text in options
    assert session.messages[-1] == {"role": "assistant", "content": reply.text}
    bad = session.ask("Which one?\nA. forest")
    assert bad.text.startswith("I cannot answer this as a multiple-choice question")
    generated = ChatSession(
        model, processor, GenerationSettings(max_new_tokens=4, mcq_scoring="generate")
    )
    generated.add_image(rgb_image)
    assert generated.ask(QUESTION).text not in options  # the tiny random LLM's own words


def test_options_past_the_context_get_a_plain_sentence(tiny_model, rgb_image):
    from skyeye.chat.session import ChatSession, GenerationSettings

    model, processor = tiny_model
    model.eval()
    long_options = "Which is it?\n" + "\n".join(
        f"{letter}. " + " ".join(["a very long option text"] * 40) for letter in "ABC"
    )
    session = ChatSession(model, processor, GenerationSettings(max_new_tokens=4))
    session.add_image(rgb_image)
    original = processor.max_length
    processor.max_length = 4096
    try:
        fits = session.ask(long_options)  # scored: the question and every option fit
        session.reset()
        session.add_image(rgb_image)
        processor.max_length = fits.prompt_tokens + 5  # the question fits, its options do not
        reply = session.ask(long_options)
    finally:
        processor.max_length = original
    assert fits.text in {format_choice(o) for o in parse_options(long_options).options}
    assert reply.text.startswith("I cannot answer this as a multiple-choice question")
    assert "context" in reply.text
    assert reply.text not in {format_choice(o) for o in parse_options(long_options).options}
