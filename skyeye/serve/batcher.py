"""Continuous batching: answers join and leave one running batch at every decoding step.

One scheduler thread owns the model's generation. A request's thread (inside
`ChatSession.stream`, through `BatchedGenerator`) hands it a `Lane` and waits. At each step the
scheduler first prefills the newcomers, each alone (its images through the tower, its own
`DynamicCache`, or an image prefix from `skyeye.serve.prefix_lru`), picks their first token and
adds their rows to the batch (`skyeye.serve.kv_rows`); then one forward decodes the next token of
every answer in the batch. An answer leaves at the step its criteria say so (end token,
``max_tokens``, a stop string, or its client's cancel event: a client that went away frees its
row at the next step). On a CPU decoding is bound by reading the weights, so four answers
decoded together cost little more than one.

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
from skyeye.serve.prefix_lru import PrefixEntry, PrefixLRU, prefix_key

logger = logging.getLogger(__name__)

__all__ = ["BatchedGenerator", "Batcher"]


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
        self._inbox: queue.Queue[Lane | None] = queue.Queue()
        self._waiting: list[Lane] = []
        # Prefilled answers whose cache cannot join a non-empty batch (sliding-window layers).
        self._parked: list[tuple[Lane, DynamicCache]] = []
        self._lanes: list[Lane] = []
        self._rows = BatchRows()
        self._hidden: torch.Tensor | None = None
        self._thread: threading.Thread | None = None
        self._hook: Any = None
        self._closed = False

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            return
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
        """Answers in the batch now."""
        return len(self._lanes)

    # ------------------------------------------------------------ scheduler
    def _run(self) -> None:
        head = self.model.language_model.get_output_embeddings()
        me = threading.get_ident()

        def keep_hidden(_module: Any, args: tuple[Any, ...], _output: Any) -> None:
            # The LM head's input is the last hidden state the [SEG] masks are decoded from;
            # only this thread's forwards are ours (requests may run the model meanwhile).
            if threading.get_ident() == me:
                self._hidden = args[0][:, -1].detach()

        self._hook = head.register_forward_hook(keep_hidden)
        try:
            with torch.no_grad():
                while self._next_newcomers():
                    for lane in self._waiting:
                        self._start(lane)
                    self._waiting = []
                    if not self._lanes and self._parked:
                        self._join(*self._parked.pop(0))
                    if self._lanes:
                        self._step()
        finally:
            self._hook.remove()
            parked = [lane for lane, _ in self._parked]
            for lane in [*self._waiting, *self._lanes, *parked, *self._drain()]:
                lane.finish(ServerClosedError("the server is shutting down"))

    def _drain(self) -> list[Lane]:
        lanes: list[Lane] = []
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return lanes
            if item is not None:
                lanes.append(item)

    def _next_newcomers(self) -> bool:
        """Move queued lanes to `_waiting`, as many as there are free rows; block while the
        batch is empty. False once closed."""
        free = self.max_batch - len(self._lanes) - len(self._waiting) - len(self._parked)
        block = not self._lanes and not self._waiting and not self._parked
        while free > 0:
            try:
                item = self._inbox.get(block=block)
            except queue.Empty:
                break
            if item is None:
                return False
            self._waiting.append(item)
            free -= 1
            block = False
        return not self._closed

    def _start(self, lane: Lane) -> None:
        """Prefill ``lane`` alone, pick its first token, add its row (or finish it)."""
        try:
            if lane.stopped():
                lane.finish()
                return
            if lane.streamer is not None:
                assert lane.ids is not None
                lane.streamer.put(lane.ids.cpu())  # as generate: the prompt first
            logits, cache = self._prefill(lane)
            if lane.advance(logits):
                lane.finish()
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
        except Exception as err:  # this request's fault or not, the others go on
            logger.exception("an answer failed before joining the batch")
            lane.finish(err)

    def _join(self, lane: Lane, cache: DynamicCache) -> None:
        self._rows.join(cache)
        self._lanes.append(lane)

    def _prefill(self, lane: Lane) -> tuple[torch.Tensor, DynamicCache]:
        """Run the prompt: (first logits (1, V) float32, the lane's one-row cache).

        From the longest cached prefix: the prompt up to its last image (neither the tower nor
        those tokens run), else the text before its first image, else nothing.
        """
        model, lm, inputs = self.model, self.model.language_model, lane.inputs
        assert lane.ids is not None
        length = lane.ids.shape[1]
        entry = self.prefixes.get(lane.prefix_key) if lane.prefix_key else None
        text = None
        if entry is not None and entry.length < length:
            lane.prefix_hit, lane.vision, cache = True, entry.vision, entry.cache()
            start = entry.length
            fed: dict[str, Any] = {"input_ids": lane.ids[:, start:]}
        else:
            embeds, lane.vision, _ = model.embed_inputs(
                inputs["input_ids"], inputs.get("pixel_values"), inputs.get("wavelengths")
            )
            text = self.prefixes.get(lane.text_key) if lane.text_key else None
            if text is not None and text.length == lane.text_length:
                cache, start = text.cache(), text.length
            else:
                cache, start = DynamicCache(config=lm.config), 0
            fed = {"inputs_embeds": embeds[:, start:]}
        positions = torch.arange(start, length, device=lane.ids.device)[None]
        out = lm(**fed, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
        self._keep_step(lane, 0)
        if entry is None:
            self._remember(lane, cache, text is None)
        return out.logits[:, -1].to(dtype=torch.float32, copy=True), cache

    def _remember(self, lane: Lane, cache: DynamicCache, text_too: bool) -> None:
        """Keep the prompt's image prefix (and its text prefix when that was not cached)."""
        if not self.prefixes.max_bytes:
            return
        if text_too and lane.text_key and lane.text_length:
            self.prefixes.put(lane.text_key, PrefixEntry.cut(cache, lane.text_length, None))
        if lane.prefix_key and lane.prefix_length and lane.vision is not None:
            entry = PrefixEntry.cut(cache, lane.prefix_length, lane.vision)
            self.prefixes.put(lane.prefix_key, entry)

    def _keep_step(self, lane: Lane, row: int) -> None:
        assert self._hidden is not None
        lane.steps.append(self._hidden[row : row + 1])

    def _step(self) -> None:
        """One token for every answer in the batch; finished ones leave."""
        lanes, rows = self._lanes, self._rows
        assert rows.cache is not None
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
            self._keep_step(lane, row)
            try:
                finished = lane.advance(logits[row : row + 1])
            except Exception as err:  # e.g. a stop-string criterion failing: this answer only
                logger.exception("an answer failed while decoding")
                lane.finish(err)
                finished = True
            if finished:
                lane.finish()
                leaving.append(row)
        if leaving:
            rows.leave(leaving)
            self._lanes = [lane for row, lane in enumerate(lanes) if row not in leaving]


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
