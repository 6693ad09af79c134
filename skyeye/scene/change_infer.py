"""The model on a batch of window pairs (before, after): the change mask and each date's classes.

Per window, two forced answers decoded in one forward pass each, no generation:

* the change answer (``<p>changed land cover</p> [SEG]``, `change_answer`) to the question about
  both dates ("Image 1 (2009-08-18): <image> Image 2 (...): <image> What changed?", the chat's
  dated-image rule), its `[SEG]` paired (before, after) so the model's change decoder
  (`change_head`, `config.mask_change`) draws it (`skyeye.modeling.change_masks`);
* the class masks of each date alone, as `skyeye.chat.transitions` measures a change answer's
  transitions: "<image> Segment all water, ... and bare land." answered
  ``<p>water</p> [SEG] ...``, decoded by the mask decoder on that date.

Clouds, which decide what is compared, come from the spectral cloud rule on each date's window
pixels (`skyeye.grounding.clouds.pair_clouds`, the scene's value scaling of that date) where it
reads both dates; where it cannot (8-bit photos, minmax scaling, no blue band) no cloud is
masked (`skyeye.grounding.clouds`). The class masks are drawn only in windows with change, unless
a caller names some as drawn on every window (`always`: bench/pair_clouds.py's baseline asks the
decoder's "cloud" and "cloud shadow" so, as the scene did before issue 28).

The windows of a batch share one prompt, so their rows stack without padding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from skyeye.chat.change_answer import GENERAL_PHRASE
from skyeye.chat.class_question import class_request
from skyeye.chat.session import ChatSession
from skyeye.errors import SceneError
from skyeye.grounding.clouds import pair_clouds
from skyeye.grounding.grammar import seg_opening
from skyeye.io.raster import RasterImage
from skyeye.processing.dated_images import dated_image_parts
from skyeye.processing.image_processor import FixedScaling
from skyeye.scene.infer import PreparedBatch, WindowAnswer, prompt_prefix_cache, repeat_cache

logger = logging.getLogger(__name__)


def change_answer(phrase: str) -> str:
    """The forced change answer of every window: ``<p>changed land cover</p> [SEG]`` (the
    phrase `skyeye.chat.change_answer.read_change_question` reads from the question, as the
    chat forces it)."""
    return seg_opening([phrase])


class ChangeWindowRunner:
    """Change masks and per-date class masks of window pairs, with one loaded model.

    Args:
        session: a `ChatSession` whose model has a change decoder.
        prompt: the user's question about both dates ("What changed?").
        dates: the two dates (ISO or None), named in the prompt as the chat names them.
        classes: the mask decoder's phrases asked on each date (the transition classes).
        always: those of ``classes`` drawn on every window (the scene passes none); the others
            are drawn only on windows whose change mask reaches 0.5 (they matter only inside it).
        phrase: the change phrase the forced answer opens.
        spectral_clouds: each window's clouds by the spectral rule (`prepare` finds them on the
            pixels, `answer` returns them as ``arrays["clouds"]``).
    """

    def __init__(
        self,
        session: ChatSession,
        prompt: str,
        dates: Sequence[str | None],
        classes: Sequence[str],
        always: Sequence[str] = (),
        phrase: str = GENERAL_PHRASE,
        spectral_clouds: bool = False,
    ) -> None:
        self.model, self.processor = session.model, session.processor
        if getattr(self.model, "change_head", None) is None:
            raise SceneError(
                "this model has no change decoder (config.mask_change is off): give --model a "
                "folder trained with python -m finetune.change_stage"
            )
        if self.model.mask_head is None:
            raise SceneError("this model has no mask decoder: give a model with a mask head")
        system = session.settings.system_prompt
        head: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        text_part = {"type": "text", "text": prompt}
        self._pair_messages = head + [
            {"role": "user", "content": [*dated_image_parts(list(dates)), text_part]}
        ]
        self.classes, self.always = list(classes), set(always)
        self.spectral_clouds = spectral_clouds
        question, answer = class_request(self.classes) if classes else ("", "")
        self._class_messages = head + [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
        ]
        tok = self.processor.tokenizer
        self.phrase, self.text = phrase, change_answer(phrase)
        self._change_ids = torch.tensor([tok(self.text, add_special_tokens=False)["input_ids"]])
        self._class_ids = torch.tensor([tok(answer, add_special_tokens=False)["input_ids"]])
        self._prompt_ids: dict[str, torch.Tensor] = {}
        self._prefix: dict[str, Any] = {}

    @property
    def patch_size(self) -> int:
        vc = self.model.config.vision_config
        return int(vc.image_size // vc.grid_size)

    def _tokenise(self, pair: tuple[RasterImage, RasterImage], features: dict[str, list]) -> None:
        """The two prompts' ids (1, L), the same for every window: tokenised once, at the
        first batch (the processor checks them against images; the features are reused)."""
        if self._prompt_ids:
            return
        for kind, messages, n in (
            ("pair", self._pair_messages, 2),
            ("class", self._class_messages, 1),
        ):
            one = {k: v[:n] for k, v in features.items()}
            encoded = self.processor(messages, list(pair[:n]), image_features=one)
            self._prompt_ids[kind] = encoded["input_ids"]

    def prepare(
        self,
        pairs: Sequence[tuple[RasterImage, RasterImage]],
        scalings: tuple[FixedScaling | None, FixedScaling | None] = (None, None),
    ) -> PreparedBatch:
        """Model inputs of window pairs, each date value-scaled with its own scene's scaling,
        and with ``spectral_clouds`` each date's clouds by the rule read on the same scaling;
        nothing refers to the windows' pixels afterwards."""
        if not pairs:
            return PreparedBatch({}, [])
        proc = self.processor.image_processor
        dates = [
            proc([p[k] for p in pairs], return_tensors="pt", scaling=scalings[k]) for k in (0, 1)
        ]
        features = {
            name: [t for pair in zip(dates[0][name], dates[1][name], strict=True) for t in pair]
            for name in dates[0]
        }
        self._tokenise(pairs[0], features)
        grids = [(int(p[0].data.shape[1]), int(p[0].data.shape[2])) for p in pairs]
        clouds = None
        if self.spectral_clouds:
            clouds = []
            for pair in pairs:
                found = pair_clouds(proc, pair, scalings)
                if found is None:
                    raise SceneError(
                        "the spectral cloud test cannot read these windows: decide it per scene "
                        "with skyeye.grounding.clouds.cloud_rule_for"
                    )
                clouds.append(np.stack(found[0]))
        return PreparedBatch(features, grids, clouds)

    def _forced(
        self,
        kind: str,
        rows: int,
        features: dict[str, list],
        answer: torch.Tensor,
        entries: list[Any] | None = None,
        keep: list[list[int]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (K, H, W) and image index (K,) of the forced ``answer`` (1, T) to prompt
        ``kind`` for ``rows`` windows (their images' ``features``), in one forward pass as
        `predict_masks` does it, except that the prompt's text before its first image (the same
        for every window) comes from a key/value cache computed once. ``entries``: the
        `seg_image_index` of the answers' `[SEG]`s (None: the last image before each);
        ``keep``: per row, the answer's `[SEG]`s (0, 1, ...) to decode (None: all)."""
        device = self.model.device
        prompt = self._prompt_ids[kind]
        ids = torch.cat([prompt, answer], dim=1).to(device)
        if kind not in self._prefix:
            image_id = self.model.config.image_token_id
            first = int((prompt[0] == image_id).nonzero()[0, 0])
            self._prefix[kind] = (
                (first, prompt_prefix_cache(self.model, ids[:, :first])) if first else (0, None)
            )
        start, cache = self._prefix[kind]
        if cache is None:
            start = 0
        suffix = ids[:, start:].repeat(rows, 1)
        embeds, vision, _ = self.model.embed_inputs(
            suffix, features["pixel_values"], features["wavelengths"]
        )
        kwargs: dict[str, Any] = {} if cache is None else {"cache": repeat_cache(cache, rows)}
        out = self.model.language_model(
            inputs_embeds=embeds,
            attention_mask=torch.ones((rows, ids.shape[1]), dtype=torch.long, device=device),
            output_hidden_states=True,
            logits_to_keep=1,
            **kwargs,
        )
        del kwargs
        # Only the answer's [SEG]s make masks (one typed in the prompt is text), and of those
        # only the ones `keep` names per row (by their order in the answer).
        seg = self.model.config.seg_token_id
        seg_ids = suffix.clone()
        head = prompt.shape[1] - start
        seg_ids[:, :head][seg_ids[:, :head] == seg] = -1
        if keep is not None:
            for row, wanted in enumerate(keep):
                where = (seg_ids[row, head:] == seg).nonzero()[:, 0] + head
                drop = [int(p) for j, p in enumerate(where) if j not in set(wanted)]
                seg_ids[row, drop] = -1
        return self.model.decode_masks(
            out.hidden_states[-1],
            seg_ids,
            vision,
            None,
            entries,
            pixels=features.get("pixel_values_hires"),
            wavelengths=features["wavelengths"],
        )

    @torch.no_grad()
    def answer(self, batch: PreparedBatch, classes: bool = True) -> list[WindowAnswer]:
        """Per window: the change probability (h, w) as ``prob``, its dates' class masks as
        ``arrays["classes"]``: packed bits of (2, n_classes, h, w) bool (before, after), and
        with ``spectral_clouds`` the rule's clouds as ``arrays["clouds"]``: packed (2, h, w).
        ``classes=False``: the change probability alone (no class pass)."""
        if not batch.grids:
            return []
        n = len(batch.grids)
        features = batch.inputs
        pairs = [(2 * i, 2 * i + 1) for i in range(n)]
        logits, _ = self._forced("pair", n, features, self._change_ids, pairs)
        answers = []
        for i, (h, w) in enumerate(batch.grids):
            up = F.interpolate(logits[i][None, None].float(), size=(h, w), mode="bilinear")[0, 0]
            prob = torch.sigmoid(up).cpu().numpy().astype(np.float32)
            answer = WindowAnswer(text=self.text, phrase=self.phrase, prob=prob)
            if batch.clouds is not None:
                answer.arrays["clouds"] = np.packbits(batch.clouds[i].ravel())
            answers.append(answer)
        del logits
        if self.classes and classes:
            # A class decides a transition only inside the change mask: its masks are drawn
            # where this window's change reaches 0.5 (the blended mask can reach 0.5 only
            # where some window's does); `always` classes everywhere.
            full = [bool(a.prob is not None and a.prob.max() >= 0.5) for a in answers]
            masks = [self._class_masks(features, date, batch.grids, full) for date in (0, 1)]
            for i, answer in enumerate(answers):
                both = np.stack([masks[0][i], masks[1][i]])  # (2, n_classes, h, w)
                answer.arrays["classes"] = np.packbits(both.ravel())
                answer.arrays["classes_drawn"] = np.array(
                    [full[i] or p in self.always for p in self.classes]
                )
        return answers

    def _class_masks(
        self,
        features: dict[str, list],
        date: int,
        grids: list[tuple[int, int]],
        full: list[bool],
    ) -> list[np.ndarray]:
        """(n_classes, h, w) bool per window: the classes drawn on date ``date`` (0, 1) alone;
        for a window whose ``full`` is False only the `always` classes (the rest stay False).
        Only windows that draw a class go through the forward pass (none: no pass at all)."""
        drawn = [[j for j, p in enumerate(self.classes) if f or p in self.always] for f in full]
        out = [np.zeros((len(self.classes), h, w), bool) for h, w in grids]
        rows = [row for row, js in enumerate(drawn) if js]
        if not rows:
            return out
        # The rows are separate sequences of one length: a subset's rows are those rows.
        one = {k: [v[date::2][row] for row in rows] for k, v in features.items()}
        keep = [drawn[row] for row in rows]
        logits, index = self._forced("class", len(rows), one, self._class_ids, keep=keep)
        order = [(row, j) for row in rows for j in drawn[row]]  # decode_masks' order
        for k in range(logits.shape[0]):
            row, j = order[k]
            assert rows[int(index[k])] == row
            h, w = grids[row]
            up = F.interpolate(logits[k][None, None].float(), size=(h, w), mode="bilinear")[0, 0]
            out[row][j] = (up > 0).cpu().numpy()
        return out
