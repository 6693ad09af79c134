"""500 random chat requests (OpenAI-shaped, random types and values in every field) through the
app: none may be answered with a 5xx. Seeded, so a failure repeats; the failing bodies are shown."""

from __future__ import annotations

import base64
import collections
import json
import random
from typing import Any

REQUESTS = 500
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    7,
    2**63,
    -(2**70),
    0.0,
    1e-300,
    5e-324,
    0.5,
    1.5,
    1e308,
    -0.0,
    "",
    "yes",
    "1",
    "ü\u0000\ud7ff",
    "x" * 300,
    [],
    [None],
    [1, "a"],
    {},
    {"type": "text"},
    {"a": {"b": [1]}},
]


def _odd(rng: random.Random) -> Any:
    return rng.choice(ODD_VALUES)


def _image_url(rng: random.Random, png_url: str) -> Any:
    payload = png_url.split(",", 1)[1]
    raw = base64.b64decode(payload)
    return rng.choice(
        [
            png_url,
            png_url,
            png_url.replace("image/png", "image/tiff"),  # PNG bytes announced as a TIFF
            "data:image/png;base64," + payload[: len(payload) // 2],  # truncated base64
            "data:image/png;base64," + base64.b64encode(raw[: len(raw) // 2]).decode(),
            "data:image/png;base64," + base64.b64encode(rng.randbytes(64)).decode(),
            "data:image/png," + payload,  # no ;base64
            "data:;base64," + payload,
            "data:image/svg+xml;base64,PHN2Zy8+",
            "data:image/png;base64,",
            "data:image/png;base64,@@@@",
            "data:",
            "file:///etc/passwd",
            "https://example.com/a.png",
            "ftp://x",
            "",
            _odd(rng),
        ]
    )


def _extension(rng: random.Random) -> Any:
    return rng.choice(
        [
            {"wavelengths": rng.choice([[0.665, 0.56, 0.49], _odd(rng)])},
            {"wavelengths": [rng.uniform(-5, 50) for _ in range(rng.randint(0, 5))]},
            {"band_names": rng.choice([["R", "G", "B"], ["a"], _odd(rng)])},
            {"sensor": rng.choice(["rgb", "naip", "sentinel-2", "nope", _odd(rng)])},
            {"unknown": 1},
            _odd(rng),
        ]
    )


def _part(rng: random.Random, png_url: str) -> Any:
    """A random content part: text, image (good or malformed URL, odd extension) or junk."""
    roll = rng.random()
    if roll < 0.4:
        return {"type": "text", "text": rng.choice(["is there water ?", "", _odd(rng)])}
    if roll < 0.9:
        image_url = _image_url(rng, png_url)
        part: dict[str, Any] = {
            "type": "image_url",
            "image_url": {"url": image_url} if rng.random() < 0.8 else image_url,
        }
        if rng.random() < 0.3:
            part["skyeye"] = _extension(rng)
        return part
    return rng.choice([{"type": _odd(rng), "text": _odd(rng)}, _odd(rng)])


def _message(rng: random.Random, png_url: str) -> Any:
    """A random message: any role, string / parts / junk content, sometimes not an object."""
    content = rng.choice(
        ["is there water ?", [_part(rng, png_url) for _ in range(rng.randint(0, 3))], _odd(rng)]
    )
    message = {"role": rng.choice(["user", "assistant", "system", "developer", _odd(rng)])}
    message["content"] = content
    return message if rng.random() < 0.9 else _odd(rng)


#: Valid values of each parameter (a request starts from some of them, then is broken).
VALID: dict[str, list[Any]] = {
    "model": ["skyeye-tiny", None],
    "max_tokens": [1, 2, 3],
    "max_completion_tokens": [1, 3],
    "temperature": [0, 0.7, 1, 2, 1e-300],
    "top_p": [0, 0.5, 1],
    "n": [1],
    "stream": [True, False],
    "stop": ["\n", ["a", "the"], "e", []],
    "seed": [0, 7, 2**40],
    "tools": [[]],
    "tool_choice": ["none"],
    "response_format": [{"type": "text"}],
    "logprobs": [False],
    "user": ["fuzz"],
    "stream_options": [{"include_usage": False}, {"include_usage": True}, None],
}
#: What a broken request may also carry: other OpenAI parameters and non-OpenAI keys.
OTHER_KEYS = ["presence_penalty", "frequency_penalty", "logit_bias", "functions", "top_k", "skyeye"]


def _request(rng: random.Random, png_url: str) -> dict[str, Any]:
    """A valid request (a user question with an image, random valid parameters) with 0 to 3
    random breakages: a parameter set to an odd value, a message replaced by a random one, a
    part of the question replaced, or messages dropped."""
    question = [{"type": "text", "text": "is there water ?"}]
    question.append({"type": "image_url", "image_url": {"url": png_url}})
    body: dict[str, Any] = {"messages": [{"role": "user", "content": question}]}
    for name, values in VALID.items():
        if rng.random() < 0.3:
            body[name] = rng.choice(values)
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        roll = rng.random()
        if roll < 0.4:
            body[rng.choice([*VALID, *OTHER_KEYS])] = _odd(rng)
        elif roll < 0.6:
            body["messages"].insert(0, _message(rng, png_url))
        elif roll < 0.9:
            question[rng.randrange(2)] = _part(rng, png_url)
        else:
            body["messages"] = _odd(rng) if rng.random() < 0.5 else []
            break
    return body


def test_500_random_requests_get_no_5xx(api, png_url):
    rng = random.Random(26)
    statuses: collections.Counter[int] = collections.Counter()
    failures = []
    reasons: collections.Counter[str] = collections.Counter()
    for _ in range(REQUESTS):
        body = _request(rng, png_url)
        if body.get("stream") is True:
            with api.stream("POST", "/v1/chat/completions", json=body) as r:
                text = "".join(r.iter_text())
            if r.status_code == 200:
                # A stream that started must end with [DONE] or an error event, never a 5xx one.
                assert text.rstrip().endswith("data: [DONE]") or '"error"' in text, text[-300:]
                assert "server_error" not in text, text[-300:]
        else:
            r = api.post("/v1/chat/completions", json=body)
            text = r.text
        statuses[r.status_code] += 1
        if r.status_code >= 500:
            failures.append((r.status_code, json.dumps(body)[:400], text[:300]))
        elif r.status_code >= 400:
            reasons[json.loads(text)["error"]["message"][:40]] += 1
    print(f"\nstatuses of {REQUESTS} random requests: {dict(sorted(statuses.items()))}")
    print("most frequent refusals:", reasons.most_common(8))
    assert not failures, failures[:5]
    assert statuses[200] >= 25 and statuses[400] >= 100  # the fuzz reaches both outcomes
