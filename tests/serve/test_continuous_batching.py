"""Continuous batching (issue 30): answers decoded together give the one-at-a-time answers, a
cancelled answer leaves the batch at the next step, and the image-prefix cache stays in bounds.

The model is the tiny random SkyEye with its weights redrawn at a larger scale, so that its
greedy answers differ with the image and the question (at the default scale every answer is
the same word) and a [SEG] turns up: agreement then means something.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from serve_testing import scripted_settings

from skyeye.chat.session import ChatSession, GenerationSettings
from skyeye.errors import GenerationCancelled
from skyeye.io.raster import RasterImage
from skyeye.serve.batcher import BatchedGenerator, Batcher
from skyeye.serve.prefix_lru import PrefixEntry, PrefixLRU

pytestmark = [
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
]

QUESTIONS = [
    "describe this image .",
    "is there water ?",
    "what is in the image ?",
    "how many fields ?",
    "describe the river .",
    "is there snow ?",
]


@pytest.fixture(scope="module")
def chat(tiny_llm_dir):
    from skyeye_testing import make_tiny_model

    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    model.eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0, 0.3, generator=generator)
    return ChatSession(model, processor, GenerationSettings(measure=False))


def image(seed: int) -> RasterImage:
    pixels = np.random.default_rng(seed).random((3, 32, 32)).astype("float32")
    return RasterImage(data=pixels, band_names=["R", "G", "B"], wavelengths=[0.665, 0.56, 0.49])


def settings(i: int, **changes) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=6 + 2 * i, measure=False, **changes)


def ask(chat, i: int, generator=None, **changes) -> tuple[str, list[np.ndarray]]:
    session = ChatSession(chat.model, chat.processor, settings(i, **changes))
    if generator is not None:
        session.generator = generator
    session.add_image(image(i))
    reply = session.ask(QUESTIONS[i % len(QUESTIONS)])
    return reply.text, reply.masks


#: How long `in_threads` waits for each thread (an answer of the tiny model takes well under 1 s).
JOIN_S = 120


def batched_answers(chat, batcher: Batcher, count: int) -> list[str]:
    """The texts of questions 0..count-1 asked at once through ``batcher``, closed after."""
    try:
        return in_threads(count, lambda i: ask(chat, i, BatchedGenerator(batcher, "tiny"))[0])
    finally:
        batcher.close()


def in_threads(count: int, work) -> list:
    results: list = [None] * count

    def run(i: int) -> None:
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_S)
    return results


def test_answers_decoded_together_are_the_one_at_a_time_answers(chat):
    alone = [ask(chat, i) for i in range(6)]
    seeded = ask(chat, 6, temperature=1.3, do_sample=True, seed=7)
    assert len({text for text, _ in alone}) >= 4, "the answers must differ to compare anything"
    assert any(masks for _, masks in alone), "a [SEG] answer must be among them"
    batcher = Batcher(chat.model, max_batch=4)
    try:

        def work(i: int):
            generator = BatchedGenerator(batcher, "tiny")
            if i == 6:
                return ask(chat, 6, generator, temperature=1.3, do_sample=True, seed=7)
            return ask(chat, i, generator)

        together = in_threads(7, work)
    finally:
        batcher.close()
    assert batcher.widest >= 2, "the answers were never decoded together"
    assert [t for t, _ in together] == [t for t, _ in alone + [seeded]]
    for (_, mine), (_, theirs) in zip(together, alone + [seeded], strict=True):
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs, strict=True):
            # The [SEG] hidden state comes from a padded batch forward: equal up to float noise.
            assert (a == b).mean() > 0.99


def test_a_cancelled_answer_leaves_at_the_next_step_and_the_others_go_on(chat):
    alone = ask(chat, 1)
    batcher = Batcher(chat.model, max_batch=4)
    cancel = threading.Event()
    eos = chat.processor.tokenizer.eos_token_id

    def no_end(input_ids, scores):
        return scores.index_fill(1, torch.tensor([eos]), -float("inf"))

    endless_settings = scripted_settings(lambda _: [no_end], max_new_tokens=400, measure=False)
    long = ChatSession(chat.model, chat.processor, endless_settings)
    long.generator = BatchedGenerator(batcher, "tiny")
    long.add_image(image(3))
    outcome: dict = {}

    def endless() -> None:
        try:
            long.ask("describe this image .", cancel=cancel)
        except Exception as err:  # GenerationCancelled expected
            outcome["error"] = err

    thread = threading.Thread(target=endless)
    try:
        thread.start()
        deadline = time.perf_counter() + 30
        while batcher.running < 1:
            assert time.perf_counter() < deadline
            time.sleep(0.005)
        other = ask(chat, 1, BatchedGenerator(batcher, "tiny"))
        steps = batcher.steps
        cancel.set()
        thread.join(timeout=30)
        assert batcher.running == 0
        assert batcher.steps - steps <= 2, "the cancelled answer kept decoding"
    finally:
        batcher.close()
    assert type(outcome.get("error")).__name__ == "GenerationCancelled"
    assert other[0] == alone[0]


def test_an_answer_that_fails_leaves_the_batch_running(chat):
    batcher = Batcher(chat.model, max_batch=4)

    seen: list[int] = []

    def boom(input_ids, scores):
        # Fails at the answer's third token: by then it decodes in the batch with the others.
        seen.append(input_ids.shape[1])
        if input_ids.shape[1] >= seen[0] + 2:
            raise RuntimeError("this answer's processor fails")
        return scores

    broken = scripted_settings(lambda _: [boom], max_new_tokens=12, measure=False)
    try:
        bad = ChatSession(chat.model, chat.processor, broken)
        bad.generator = BatchedGenerator(batcher, "tiny")
        bad.add_image(image(2))
        results = in_threads(
            3,
            lambda i: (
                ask(chat, i, BatchedGenerator(batcher, "tiny"))
                if i
                else pytest.raises(RuntimeError, bad.ask, "is there water ?")
            ),
        )
    finally:
        batcher.close()
    assert [r[0] for r in results[1:]] == [ask(chat, 1)[0], ask(chat, 2)[0]]


def test_cached_prefixes_skip_the_tower_and_answer_alike(chat):
    alone = [ask(chat, i) for i in range(2)]
    calls = []
    hook = chat.model.projector.register_forward_hook(lambda *a: calls.append(1))
    batcher = Batcher(chat.model, max_batch=2, prefix_cache_bytes=8 << 20)
    try:
        first = ask(chat, 0, BatchedGenerator(batcher, "tiny", ["image-0"]))
        assert (batcher.prefixes.hits, batcher.prefixes.misses) == (0, 2)  # image, text
        # Another image after the same system prompt: the text before it comes from the cache.
        other = ask(chat, 1, BatchedGenerator(batcher, "tiny", ["image-1"]))
        assert (batcher.prefixes.hits, batcher.prefixes.misses) == (1, 3)
        # The first image again (a stateless client's next request): the tower does not run.
        again = ask(chat, 0, BatchedGenerator(batcher, "tiny", ["image-0"]))
        assert (batcher.prefixes.hits, batcher.prefixes.misses) == (2, 3)
        # Another served model never reads these entries.
        ask(chat, 0, BatchedGenerator(batcher, "another", ["image-0"]))
        assert (batcher.prefixes.hits, batcher.prefixes.misses) == (2, 5)
    finally:
        hook.remove()
        batcher.close()
    assert len(calls) == 3, "the tower ran for a cached image prefix"
    assert [first[0], other[0], again[0]] == [alone[0][0], alone[1][0], alone[0][0]]


def test_the_prefix_cache_keeps_to_its_bytes():
    def entry(tokens: int) -> PrefixEntry:
        kv = torch.zeros(1, 2, tokens, 8)
        return PrefixEntry([(kv, kv.clone())], torch.zeros(1, 4, 8))

    size = entry(10).nbytes
    lru = PrefixLRU(max_bytes=3 * size)
    for k in range(5):
        lru.put(f"k{k}", entry(10))
        assert lru.nbytes <= lru.max_bytes
    assert len(lru) == 3 and lru.get("k0") is None and lru.get("k4") is not None
    lru.get("k2")  # now the most recent: k3 goes next
    lru.put("k5", entry(10))
    assert lru.get("k3") is None and lru.get("k2") is not None
    lru.put("huge", entry(100))  # larger than the whole budget: not kept, nothing evicted
    assert lru.get("huge") is None and len(lru) == 3
    assert PrefixLRU(0).put("k", entry(1)) is None and len(PrefixLRU(0)) == 0


def test_a_cache_that_cannot_be_stacked_decodes_one_answer_at_a_time(chat, monkeypatch):
    import skyeye.serve.batcher as batching

    alone = [ask(chat, i)[0] for i in range(3)]
    monkeypatch.setattr(batching, "stackable", lambda cache: False)  # as sliding-window layers
    # The answers must overlap for the rule to act: on a loaded machine the three threads could
    # otherwise run one after the other. Until a second answer has been prefilled, each decoding
    # step waits for something to arrive (a newcomer or a prefilled row), so the first answer is
    # still in the batch when the second one is placed.
    placed: list[int] = []
    place, step = Batcher._place, Batcher._step

    def counting_place(self, lane, cache):
        placed.append(1)
        return place(self, lane, cache)

    def patient_step(self):
        deadline = time.monotonic() + 30
        while len(placed) < 2 and self._inbox.empty() and time.monotonic() < deadline:
            time.sleep(0.005)
        return step(self)

    monkeypatch.setattr(Batcher, "_place", counting_place)
    monkeypatch.setattr(Batcher, "_step", patient_step)
    batcher = Batcher(chat.model, max_batch=4)
    together = batched_answers(chat, batcher, 3)
    assert together == alone
    assert batcher.widest == 1 and batcher.max_batch == 1


def test_a_newcomers_prefill_runs_beside_the_batchs_decoding(chat, monkeypatch):
    """While a newcomer's prompt is prefilled (held here until released), the answer already in
    the batch keeps decoding: the prefill runs on its own thread, not between the steps."""
    import skyeye.serve.prefill as prefill

    alone = ask(chat, 1)[0]
    batcher = Batcher(chat.model, max_batch=4)
    release, held = threading.Event(), threading.Event()
    original = prefill.Prefiller._prefill

    def held_prefill(self, lane):
        if batcher.running > 1:  # the newcomer, not the first answer
            held.set()
            assert release.wait(30)
        return original(self, lane)

    monkeypatch.setattr(prefill.Prefiller, "_prefill", held_prefill)
    cancel = threading.Event()
    eos = chat.processor.tokenizer.eos_token_id

    def no_end(input_ids, scores):
        return scores.index_fill(1, torch.tensor([eos]), -float("inf"))

    long = ChatSession(
        chat.model,
        chat.processor,
        scripted_settings(lambda _: [no_end], max_new_tokens=400, measure=False),
    )
    long.generator = BatchedGenerator(batcher, "tiny")
    long.add_image(image(3))
    endless = threading.Thread(
        target=lambda: pytest.raises(
            GenerationCancelled, long.ask, "describe this image .", cancel=cancel
        )
    )
    try:
        endless.start()
        deadline = time.perf_counter() + 30
        while batcher.running < 1 or not batcher.steps:
            assert time.perf_counter() < deadline
            time.sleep(0.005)
        newcomer: list = [None]
        worker = threading.Thread(
            target=lambda: newcomer.__setitem__(0, ask(chat, 1, BatchedGenerator(batcher, "tiny")))
        )
        worker.start()
        assert held.wait(30), "the newcomer's prefill never started"
        steps = batcher.steps
        time.sleep(0.3)
        assert batcher.steps - steps >= 3, "the batch stopped decoding while a prompt prefilled"
        release.set()
        worker.join(timeout=60)
    finally:
        release.set()
        cancel.set()
        endless.join(timeout=30)
        batcher.close()
    assert newcomer[0][0] == alone


def test_answers_waiting_for_a_row_are_taken_in_when_the_batch_empties(chat):
    # One row: the second and third answers wait while the first decodes. When the batch empties
    # the scheduler must admit them, not block on its inbox until another request arrives.
    alone = [ask(chat, i)[0] for i in range(3)]
    batcher = Batcher(chat.model, max_batch=1)
    together = batched_answers(chat, batcher, 3)
    assert together == alone
    assert batcher.widest == 1
