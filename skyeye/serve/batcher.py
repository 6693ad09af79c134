"""Continuous batching: answers join and leave one running batch at every decoding step.

One scheduler thread owns the batch's decoding. A request's thread (inside `ChatSession.stream`,
through `BatchedGenerator`) hands it a `Lane` and waits. The scheduler admits as many lanes as
there are free rows and hands them to the prefill worker (`skyeye.serve.prefill.Prefiller`: its
images through the tower, its prompt into its own `DynamicCache`, or from an image prefix of
`skyeye.serve.prefix_lru`, and its first token), which runs beside the decoding steps on the
other core; a prefilled lane's row joins the batch at the next step (`skyeye.serve.kv_rows`).
Each step, one forward decodes the next token of every answer in the batch. An answer leaves at
the step its criteria say so (end token, ``max_tokens``, a stop string, or its client's cancel
event: a client that went away frees its row at the next step). On a CPU decoding is bound by
reading the weights, so four answers decoded together cost little more than one.

Why not transformers' continuous batching (`generate_batch` / `init_continuous_batching`): its
requests are token ids only (SkyEye's prompts carry image embeddings, `inputs_embeds`), its
forward returns logits and no hidden states (the mask decoder needs the last hidden state of
every `[SEG]`), it switches the model to a paged attention implementation (the chat's and the
jobs' `generate` share these modules), and per-request logits processors are limited to its
own per-request versions (no repetition penalty, no seeded sampler) with no per-request stopping
criteria (stop strings, a cancel event). The pieces it does well (per-row logits processing,
padded decoding) are a few lines here, with transformers' own processors and criteria.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from skyeye.errors import ServerClosedError
from skyeye.modeling.generation_hooks import GenerationStates
from skyeye.serve.kv_rows import BatchRows, cache_device, stackable
from skyeye.serve.lane import Lane, make_lane
from skyeye.serve.prefill import LastHidden, Prefiller
from skyeye.serve.prefix_lru import PrefixLRU, prefix_key

logger = logging.getLogger(__name__)

__all__ = ["BatchedGenerator", "Batcher"]

#: A prefilled lane handed back by the prefill worker (cache None: the lane already finished).
_Prefilled = tuple[Lane, DynamicCache | None]


class Batcher:
    """The scheduler over ``model`` (a `SkyEyeForConditionalGeneration`): at most
    ``max_batch`` answers decoded together; ``prefix_cache_bytes`` of image prefixes kept
    (0: none). Start it with `start`, stop it with `close`."""

    def __init__(self, model: Any, max_batch: int, prefix_cache_bytes: int = 0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model
        self.max_batch = max_batch
        self.prefixes = PrefixLRU(prefix_cache_bytes)
        self.steps = 0  # decoding forwards run (all answers together)
        self.widest = 0  # the most answers one forward decoded
        # New lanes (from requests) and prefilled ones (from the prefill worker); None: stop.
        self._inbox: queue.Queue[Lane | _Prefilled | None] = queue.Queue()
        self._waiting: list[Lane] = []  # arrived, not yet admitted (no free row)
        self._prefilling = 0  # admitted, with the prefill worker
        # Prefilled answers whose cache cannot join a non-empty batch (sliding-window layers).
        self._parked: list[tuple[Lane, DynamicCache]] = []
        self._lanes: list[Lane] = []
        self._rows = BatchRows()
        self._thread: threading.Thread | None = None
        self._hidden: LastHidden | None = None
        self._prefiller: Prefiller | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            self._hidden = LastHidden(self.model)
            self._prefiller = Prefiller(
                self.model, self.prefixes, self._hidden, lambda *done: self._inbox.put(done)
            )
            self._thread = threading.Thread(target=self._run, name="skyeye-batcher", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the scheduler; answers still running fail with `ServerClosedError`."""
        self._closed = True
        self._inbox.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def submit(self, lane: Lane) -> None:
        """Queue ``lane``; it joins the batch at the next step (see `Lane.done`)."""
        if self._closed:
            raise ServerClosedError("the server is shutting down")
        self.start()
        self._inbox.put(lane)

    @property
    def running(self) -> int:
        """Answers admitted: in the batch now, or being prefilled to join it."""
        return len(self._lanes) + len(self._parked) + self._prefilling

    # ------------------------------------------------------------ scheduler
    def _run(self) -> None:
        assert self._hidden is not None and self._prefiller is not None
        self._hidden.attach()
        try:
            with torch.no_grad():
                while self._collect():
                    self._admit()
                    if not self._lanes and self._parked:
                        self._join(*self._parked.pop(0))
                    if self._lanes:
                        self._step()
        finally:
            # The worker first (it may be running a prompt): then nothing more arrives.
            self._prefiller.close()
            self._hidden.remove()
            closed = ServerClosedError("the server is shutting down")
            parked = [lane for lane, _ in self._parked]
            for item in [*self._waiting, *self._lanes, *parked, *self._drain()]:
                (item if isinstance(item, Lane) else item[0]).finish(closed)

    def _drain(self) -> list[Lane | _Prefilled]:
        items: list[Lane | _Prefilled] = []
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return items
            if item is not None:
                items.append(item)

    def _collect(self) -> bool:
        """Take what arrived: new lanes wait for a row, prefilled ones take theirs. Blocks
        while nothing decodes and no waiting lane can be admitted (a batch that emptied with
        lanes waiting admits them first, rather than wait for another request). False once
        closed."""
        admissible = bool(self._waiting) and self.running < self.max_batch
        block = not self._lanes and not self._parked and not admissible
        while True:
            try:
                item = self._inbox.get(block=block)
            except queue.Empty:
                return not self._closed
            if item is None:
                return False
            if isinstance(item, Lane):
                self._waiting.append(item)
            else:
                self._prefilling -= 1
                self._place(*item)
            block = False

    def _admit(self) -> None:
        """Hand waiting lanes to the prefill worker, as many as there are free rows."""
        while self._waiting and self.running < self.max_batch:
            self._prefilling += 1
            assert self._prefiller is not None
            self._prefiller.submit(self._waiting.pop(0))

    def _place(self, lane: Lane, cache: DynamicCache | None) -> None:
        """Add a prefilled lane's row to the batch (or park it, or drop it if it is done)."""
        if cache is None:  # finished while prefilled (the prefill worker finished the lane)
            return
        try:
            if lane.stopped():  # its client went away while it was prefilled
                lane.finish()
                return
        except Exception as err:  # a caller's criterion failing: this answer only
            logger.exception("an answer failed before joining the batch")
            lane.finish(err)
            return
        if self._lanes and not (stackable(cache) and stackable(self._rows.cache)):
            # Rows that cannot be stacked (sliding-window layers) wait for a lone batch, and
            # no more answers than that are taken in.
            if self.max_batch > 1:
                logger.warning("this model's KV cache cannot be batched: one answer at a time")
                self.max_batch = 1
            self._parked.append((lane, cache))
            return
        self._join(lane, cache)

    def _join(self, lane: Lane, cache: DynamicCache) -> None:
        self._rows.join(cache)
        self._lanes.append(lane)

    def _step(self) -> None:
        """One token for every answer in the batch; finished ones leave."""
        lanes, rows, hidden = self._lanes, self._rows, self._hidden
        assert rows.cache is not None and hidden is not None
        device = cache_device(rows.cache)
        fed = torch.tensor([[int(lane.new[-1])] for lane in lanes], device=device)
        positions = torch.tensor(
            [[rows.length - pad] for pad in rows.pads], dtype=torch.long, device=device
        )
        self.steps += 1
        self.widest = max(self.widest, len(lanes))
        try:
            out = self.model.language_model(
                input_ids=fed,
                attention_mask=rows.attention_mask(),
                position_ids=positions,
                cache=rows.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        except Exception as err:  # the batch as a whole is lost; say so to each answer
            logger.exception("a decoding step failed")
            for lane in lanes:
                lane.finish(err)
            self._lanes, self._rows = [], BatchRows()
            return
        logits = out.logits[:, -1].to(dtype=torch.float32, copy=True)
        leaving = []
        for row, lane in enumerate(lanes):
            lane.steps.append(hidden.row(row))
            try:
                finished = lane.advance(logits[row : row + 1])
            except Exception as err:  # e.g. a stop-string criterion failing: this answer only
                logger.exception("an answer failed while decoding")
                lane.finish(err)
                finished = True
            if finished:
                leaving.append(row)
        if leaving:
            rows.leave(leaving)
            self._lanes = [lane for row, lane in enumerate(lanes) if row not in leaving]
            for row in leaving:  # out of the batch first: a waiting caller sees it gone
                lanes[row].finish()


class BatchedGenerator:
    """A `ChatSession.generator` (`skyeye.chat.generation.AnswerGenerator`) that decodes
    through ``batcher``: the calling thread waits while the scheduler streams the answer.

    image_digests: one digest per image of the session (`skyeye.serve.images.image_digest`),
    for the image-prefix cache; None: no prefix caching for this session.
    """

    def __init__(
        self, batcher: Batcher, model_id: str, image_digests: Sequence[str] | None = None
    ) -> None:
        self.batcher, self.model_id = batcher, model_id
        self.image_digests = None if image_digests is None else list(image_digests)
        self.last_lane: Lane | None = None

    def __call__(
        self,
        model: Any,
        inputs: Any,
        *,
        streamer: BaseStreamer | None,
        stopping_criteria: StoppingCriteriaList,
        cache: DynamicCache,
        generate_kwargs: dict[str, Any],
    ) -> tuple[torch.Tensor, GenerationStates]:
        if cache.get_seq_length():
            # The server's sessions are new each request; a session's own kept prefix would
            # need the batch to hand its cache back. Not needed, so refused loudly.
            raise ValueError("BatchedGenerator does not extend a session's own KV cache")
        lane = make_lane(model, inputs, generate_kwargs, stopping_criteria, streamer)
        self._set_prefix(model, lane)
        self.last_lane = lane
        self.batcher.submit(lane)
        lane.done.wait()
        if lane.error is not None:
            raise lane.error
        vision = [] if lane.vision is None else [lane.vision]
        return lane.new_ids(), GenerationStates(vision, lane.steps)

    def _set_prefix(self, model: Any, lane: Lane) -> None:
        """The prompt's cacheable prefixes: the text before its first image, and the prompt up
        to and with its last image (that one with the images' digests in its key)."""
        if self.image_digests is None or not self.batcher.prefixes.max_bytes:
            return
        ids = lane.inputs["input_ids"]
        where = model.model.get_placeholder_mask(ids)[0].nonzero()
        if not len(where) or not self.image_digests:
            return
        lane.text_length = int(where[0, 0])
        if lane.text_length:
            lane.text_key = prefix_key(self.model_id, ids[:, : lane.text_length], [])
        lane.prefix_length = int(where[-1, 0]) + 1
        lane.prefix_key = prefix_key(
            self.model_id, ids[:, : lane.prefix_length], self.image_digests
        )
