"""Request parameters (issue 26): strict types, 400s naming the parameter, no silently ignored
OpenAI parameter, `stop` and `seed` honoured, no answer without an image, the key on every route.
"""

from __future__ import annotations

import json

import pytest

from skyeye.serve.params import MAX_DEPTH

URL = "/v1/chat/completions"


def _body(png_url: str, text: str = "describe this image .", **params) -> dict:
    image = {"type": "image_url", "image_url": {"url": png_url}}
    messages = [{"role": "user", "content": [{"type": "text", "text": text}, image]}]
    return {"model": "skyeye-tiny", "messages": messages, **params}


def _error(response, param: str | None) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "Traceback" not in error["message"] and "\n" not in error["message"]
    return error["message"]


def _answer(api, png_url: str, **params) -> dict:
    r = api.post(URL, json=_body(png_url, **params))
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]


def _streamed(api, png_url: str, **params) -> tuple[str, str]:
    """(text, finish_reason) of a streamed answer."""
    with api.stream("POST", URL, json=_body(png_url, stream=True, **params)) as r:
        assert r.status_code == 200
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line)["choices"][0] for line in lines[:-1]]
    text = "".join(c["delta"].get("content") or "" for c in chunks)
    return text.strip(), chunks[-1]["finish_reason"]


def test_json_nested_100000_deep_is_a_400(api):
    deep = "[" * 100_000 + "]" * 100_000
    r = api.post(URL, content=deep, headers={"content-type": "application/json"})
    assert "nested too deeply" in _error(r, None)
    # Deep enough to pass the parser, deeper than a request needs: refused as well.
    within = {"model": "skyeye-tiny", "messages": [], "x": json.loads("[" * 40 + "]" * 40)}
    assert MAX_DEPTH < 40
    assert "nested too deeply" in _error(api.post(URL, json=within), None)


@pytest.mark.parametrize("text", ['{"temperature": NaN}', '{"top_p": Infinity}', "[1, 2]", "{"])
def test_bodies_that_are_not_a_json_object_are_a_400(api, text):
    r = api.post(URL, content=text, headers={"content-type": "application/json"})
    _error(r, None)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", True),
        ("n", 2),
        ("n", 1.0),
        ("stream", "yes"),
        ("stream", 1),
        ("max_tokens", 0),
        ("max_tokens", True),
        ("max_tokens", 2.5),
        ("max_completion_tokens", 10**6),
        ("temperature", "1"),
        ("temperature", True),
        ("temperature", 2.5),
        ("temperature", -1e-9),
        ("top_p", 1.5),
        ("stop", 5),
        ("stop", ["a", "b", "c", "d", "e"]),
        ("stop", [""]),
        ("stop", [1]),
        ("seed", "7"),
        ("seed", 1.5),
        ("seed", True),
        ("seed", 2**70),
        ("user", 5),
        ("model", 5),
        ("stream_options", 5),
        ("stream_options", {"include_usage": "yes"}),
        ("tools", [{"type": "function", "function": {"name": "f"}}]),
        ("tool_choice", "auto"),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("response_format", {"type": "json_object"}),
        ("logprobs", True),
        ("logprobs", 0),  # not false: strict types
        ("top_logprobs", 2),
        ("logit_bias", {"50256": -100}),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 1),
        ("modalities", ["text", "audio"]),
        ("top_k", 5),  # not an OpenAI parameter: refused, as OpenAI refuses unknown ones
        ("repetition_penalty", 1.2),
    ],
)
def test_bad_or_unsupported_parameter_is_a_400_naming_it(api, png_url, param, value):
    _error(api.post(URL, json=_body(png_url, **{param: value})), param)


def test_parameters_that_ask_for_nothing_are_accepted(api, png_url):
    neutral = {
        "n": 1,
        "stream": False,
        "logprobs": False,
        "tools": [],
        "tool_choice": "none",
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "response_format": {"type": "text"},
        "stream_options": None,
        "stop": [],
        "seed": None,
        "user": "someone",
    }
    assert _answer(api, png_url, **neutral)["message"]["content"]


def test_temperatures_integer_and_denormal(api, png_url):
    greedy = _answer(api, png_url)["message"]["content"]
    # Below 1e-5 decodes greedily (dividing logits by 1e-300 would overflow them).
    assert _answer(api, png_url, temperature=1e-300)["message"]["content"] == greedy
    assert _answer(api, png_url, temperature=0)["message"]["content"] == greedy
    assert _answer(api, png_url, temperature=2, top_p=1)["message"]["content"]  # an int is fine
    assert _answer(api, png_url, temperature=1, top_p=0)["message"]["content"]


def test_seed_makes_a_sampled_answer_repeatable(api, png_url):
    def sampled(seed: int) -> str:
        return _answer(api, png_url, temperature=1.5, seed=seed, max_tokens=8)["message"]["content"]

    assert sampled(7) == sampled(7)
    assert len({sampled(seed) for seed in range(6)}) > 1  # really sampled, not greedy


def test_stop_cuts_the_answer_plain_and_streamed(api, png_url):
    full = _answer(api, png_url, max_tokens=8)["message"]["content"]
    words = full.split()
    assert len(words) >= 4, full
    stop = f" {words[2]}"
    expected = full[: full.find(stop)].strip()
    cut = _answer(api, png_url, max_tokens=8, stop=[stop, "never appears"])
    assert cut["message"]["content"] == expected and cut["finish_reason"] == "stop"
    # The [SEG] after the stop string went with it: no mask for text that was cut.
    assert cut["message"]["skyeye"]["masks"] == []
    assert _streamed(api, png_url, max_tokens=8, stop=stop) == (expected, "stop")


def test_bad_skyeye_band_fields_are_a_400(api, png_url):
    for ext in ({"band_names": 5}, {"band_names": [1, 2, 3]}, {"sensor": ["rgb"]}):
        body = _body(png_url)
        body["messages"][0]["content"][1]["skyeye"] = ext
        assert "skyeye." in _error(api.post(URL, json=body), "messages")


def test_a_conversation_without_an_image_is_refused(api, png_url):
    body = {"messages": [{"role": "user", "content": "is there water ?"}]}
    message = _error(api.post(URL, json=body), "messages")
    assert message.startswith("no image in the conversation: add an image_url part")
    # An image in an earlier turn is enough.
    body = _body(png_url)
    body["messages"] += [
        {"role": "assistant", "content": "fields"},
        {"role": "user", "content": "is there water ?"},
    ]
    assert api.post(URL, json=body).status_code == 200


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/v1/models", "/nowhere"])
def test_every_route_needs_the_key(api, path):
    r = api.get(path, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_openapi_with_the_key(api):
    assert "/v1/chat/completions" in api.get("/openapi.json").json()["paths"]
