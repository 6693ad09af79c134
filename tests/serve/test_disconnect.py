"""A client that goes away frees its slot at once and stops its generation (issue 26).

A live server (real sockets) at `--concurrency 1` over the tiny model made slow and endless
(`slow_chat`: 0.05 s a token, 400 tokens = 20 s an answer): a client that kept its slot, or an
answer that kept generating, would hold up the next request by many seconds.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from serve_testing import live_server, raw_post, read_until, slow_chat
from test_serve import NAIP, data_url, question

LONG = 400  # tokens of a dropped answer: 20 s if nothing stops it

# An error in a thread or a finaliser (e.g. a generator closed from its own thread: "cannot join
# current thread") fails the test.
pytestmark = [
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def slow_server(tiny_llm_dir):
    from skyeye.serve import ServeConfig, create_app

    config = ServeConfig(model="skyeye-tiny", concurrency=1, queue_size=8, max_new_tokens=LONG)
    chat, steps = slow_chat(tiny_llm_dir, seconds_per_token=0.05)
    app = create_app(config, chat)
    with live_server(app) as url:
        yield url, app, steps


def _body(stream: bool, max_tokens: int) -> bytes:
    messages = question("describe this image .", data_url(NAIP))
    return json.dumps(
        {"model": "skyeye-tiny", "messages": messages, "stream": stream, "max_tokens": max_tokens}
    ).encode()


def _wait_until_idle(app, steps, seconds: float = 5.0) -> None:
    """Wait until the model stopped decoding (no step for 0.5 s = 10 token times) and the gate is
    empty; fail after ``seconds`` (a dropped 400-token answer left running decodes for 20 s)."""
    started = time.perf_counter()
    last, still_since = steps.count, time.perf_counter()
    while app.state.gate.inside or time.perf_counter() - still_since < 0.5:
        assert time.perf_counter() - started < seconds, (
            f"still decoding ({steps.count - last} steps in the last poll) or "
            f"{app.state.gate.inside} request(s) in the gate after {seconds} s"
        )
        time.sleep(0.05)
        if steps.count != last:
            last, still_since = steps.count, time.perf_counter()


def _timed_answer(url: str) -> float:
    started = time.perf_counter()
    r = httpx.post(f"{url}/chat/completions", content=_body(stream=False, max_tokens=3), timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    return time.perf_counter() - started


def test_three_dropped_streams_then_a_request_is_answered_at_once(slow_server):
    url, app, steps = slow_server
    for _ in range(3):
        sock = raw_post(f"{url}/chat/completions", _body(stream=True, max_tokens=LONG))
        read_until(sock, b"data: ")  # the first chunk: the answer is being generated
        sock.close()
    seconds = _timed_answer(url)
    print(f"answered in {seconds:.2f} s after 3 dropped streams")
    assert seconds < 5.0
    # Not only the slots: the dropped answers stopped generating too.
    _wait_until_idle(app, steps)


def test_a_client_gone_right_after_sending_stops_its_answer(slow_server):
    url, app, steps = slow_server
    raw_post(f"{url}/chat/completions", _body(stream=False, max_tokens=LONG)).close()
    time.sleep(0.3)  # let the server take it in
    assert _timed_answer(url) < 5.0
    _wait_until_idle(app, steps)


def test_a_queued_client_that_leaves_gives_up_its_place(slow_server):
    url, app, steps = slow_server
    running = raw_post(f"{url}/chat/completions", _body(stream=True, max_tokens=LONG))
    read_until(running, b"data: ")
    queued = raw_post(f"{url}/chat/completions", _body(stream=False, max_tokens=LONG))
    deadline = time.perf_counter() + 10  # a loaded machine may take a moment to admit it
    while app.state.gate.inside != 2:  # one answering, one waiting
        assert time.perf_counter() < deadline, "the second request never reached the queue"
        time.sleep(0.02)
    queued.close()
    deadline = time.perf_counter() + 5
    while app.state.gate.inside != 1:
        assert time.perf_counter() < deadline, "the queued request kept its place"
        time.sleep(0.02)
    running.close()
    _wait_until_idle(app, steps)
