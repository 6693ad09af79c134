"""Newcomers' prompts run on a worker thread of their own, beside the batch's decoding steps.

A prompt's prefill (its images through the tower, then every prompt token through the LLM) costs
several decoding steps, and it cannot share a step's forward: run on the scheduler thread, it
stopped every answer in the batch while it ran, and on a 2-core CPU one core idled (torch ops
release the GIL, so the two forwards run side by side). `Prefiller` takes a lane the scheduler
admitted, runs its prompt (from the longest cached prefix, `skyeye.serve.prefix_lru`), picks its
first token and hands the lane and its one-row KV cache back through ``ready``; the scheduler
stacks it into the batch at its next step (`skyeye.serve.kv_rows`). Each prompt is computed alone,
exactly as before, so answers are unchanged.

`LastHidden` is the forward hook both threads read the LM head's input from (the last hidden
state the `[SEG]` masks are decoded from), one value per thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import torch
from transformers import DynamicCache

from skyeye.errors import ServerClosedError
from skyeye.serve.lane import Lane
from skyeye.serve.prefix_lru import PrefixEntry, PrefixLRU

logger = logging.getLogger(__name__)

__all__ = ["LastHidden", "Prefiller"]


class LastHidden:
    """A forward hook on ``model``'s LM head keeping, for each thread that called `attach`, the
    last position's hidden state (B, D) of that thread's latest forward. Other threads' forwards
    (a request decoding its masks) are not recorded."""

    def __init__(self, model: Any) -> None:
        self._local = threading.local()
        head = model.language_model.get_output_embeddings()
        self._handle = head.register_forward_hook(self._keep)

    def _keep(self, _module: Any, args: tuple[Any, ...], _output: Any) -> None:
        if getattr(self._local, "on", False):
            self._local.hidden = args[0][:, -1].detach()

    def attach(self) -> None:
        """Record this thread's forwards from now on."""
        self._local.on = True

    def row(self, row: int) -> torch.Tensor:
        """Row ``row`` (1, D) of this thread's latest forward."""
        hidden = self._local.hidden
        return hidden[row : row + 1]

    def remove(self) -> None:
        self._handle.remove()


#: What a prefill hands back: the lane and its one-row cache, or None when the lane already
#: finished (cancelled, its first token the last, or failed: the lane says which).
Ready = Callable[[Lane, DynamicCache | None], None]


class Prefiller:
    """One worker thread running admitted lanes' prompts in arrival order (``model``: a
    `SkyEyeForConditionalGeneration`; ``prefixes``: the prefix cache, used by this thread only;
    ``hidden``: the shared `LastHidden`; ``ready``: called with every lane it took)."""

    def __init__(self, model: Any, prefixes: PrefixLRU, hidden: LastHidden, ready: Ready) -> None:
        self.model, self.prefixes, self.hidden, self.ready = model, prefixes, hidden, ready
        self._queue: queue.Queue[Lane | None] = queue.Queue()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="skyeye-prefill", daemon=True)
        self._thread.start()

    def submit(self, lane: Lane) -> None:
        self._queue.put(lane)

    def close(self) -> None:
        """Stop after the prompt in hand; lanes still queued fail with `ServerClosedError` and
        are not handed back."""
        self._closing = True
        self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        self.hidden.attach()
        with torch.no_grad():
            while (lane := self._queue.get()) is not None:
                if self._closing:
                    lane.finish(ServerClosedError("the server is shutting down"))
                    continue
                self.ready(lane, self._start(lane))
        while not self._queue.empty():  # sent after the stop: nobody will decode them
            if (lane := self._queue.get_nowait()) is not None:
                lane.finish(ServerClosedError("the server is shutting down"))

    def _start(self, lane: Lane) -> DynamicCache | None:
        """Prefill ``lane``, pick its first token: its cache, or None once it finished."""
        try:
            if lane.stopped():
                lane.finish()
                return None
            if lane.streamer is not None:
                assert lane.ids is not None
                lane.streamer.put(lane.ids.cpu())  # as generate: the prompt first
            logits, cache = self._prefill(lane)
            if lane.advance(logits):
                lane.finish()
                return None
            return cache
        except Exception as err:  # this request's fault or not, the others go on
            logger.exception("an answer failed before joining the batch")
            lane.finish(err)
            return None

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
        lane.steps.append(self.hidden.row(0))
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
