"""Conversations about one tile and one label source: caption, presence, proportion, box, mask,
multiple choice and counting.

With ``ground`` the presence and proportion answers start with the class's mask
(``<p>water</p> [SEG] Yes.``; an empty mask when it is absent): the model looks before it answers,
and the chat states the yes/no and the share its own mask measures (skyeye/chat/measured.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instruct_data.boxes import format_box
from instruct_data.from_rasters import templates as T
from instruct_data.from_rasters.labels import LabelLayer
from instruct_data.from_rasters.regions import (
    class_fractions,
    count_regions,
    largest_region,
    percent_phrase,
    position_phrase,
)
from instruct_data.masks import encode_mask
from instruct_data.schema import Box, Conversation, ImageRef, Mask, Turn
from skyeye.constants import MCQ_LETTERS, SEG_TOKEN

# Generator task -> unified-format task.
TASK_KIND = {
    "caption": "caption",
    "presence": "vqa",
    "proportion": "vqa",
    "refer": "refer",
    "segmentation": "segmentation",
    "mcq": "mcq",
    "count": "vqa",
}


@dataclass
class TileView:
    """One tile variant as the questions see it.

    cmap: (H, W) int16 class map of the layer (0 unlabelled); valid: (H, W) bool image validity.
    img_phrase: how the prompt names the image ("this Sentinel-2 image").
    compass: write north/south... (north-up tile) instead of upper/lower.
    """

    image: ImageRef
    cmap: np.ndarray
    valid: np.ndarray
    img_phrase: str
    compass: bool
    record_id: str
    source: str
    meta: dict


class TileQuestions:
    """Builds the conversations of one tile view for one label layer (seeded ``rng``)."""

    def __init__(
        self,
        view: TileView,
        layer: LabelLayer,
        rng: np.random.Generator,
        min_present: float,
        min_region: float,
        ground: bool = False,
    ) -> None:
        self.v, self.layer, self.rng = view, layer, rng
        self.min_present, self.min_region = min_present, min_region
        self.ground = ground
        self.fracs = class_fractions(view.cmap, view.valid, len(layer.classes))
        self.labelled = float(((view.cmap > 0) & view.valid).sum() / max(int(view.valid.sum()), 1))

    # -- helpers -------------------------------------------------------------------------------
    def mask(self, k: int) -> np.ndarray:
        """(H, W) bool: pixels of class index k (0-based into layer.classes)."""
        return (self.v.cmap == k + 1) & self.v.valid

    def present(self) -> list[int]:
        return [
            k for k, f in enumerate(self.fracs) if self.layer.askable[k] and f >= self.min_present
        ]

    def absent(self) -> list[int]:
        if not self.layer.negatives:
            return []
        return [k for k, f in enumerate(self.fracs) if self.layer.askable[k] and f == 0]

    def grounded(self, k: int, text: str) -> Turn:
        """An answer turn; with ``ground`` it starts with class k's mask (empty when absent)."""
        if not self.ground:
            return Turn("assistant", text)
        cls = self.layer.classes[k]
        return Turn(
            "assistant",
            f"<p>{cls}</p> {SEG_TOKEN} {text}",
            masks=[Mask(seg_index=0, rle=encode_mask(self.mask(k)), image_index=0)],
        )

    def where(self, k: int) -> str:
        return position_phrase(self.mask(k), self.v.compass)

    def conv(self, task: str, turns: list[Turn], extra: dict) -> Conversation:
        turns[0].text = "<image>\n" + turns[0].text
        meta = {
            **self.v.meta,
            "gen_task": task,
            "label_source": self.layer.description,
            "label_type": self.layer.kind,
            "label_layer": self.layer.name,
            "proportions": {
                c: round(float(f), 4)
                for c, f in zip(self.layer.classes, self.fracs, strict=True)
                if f > 0
            },
            **extra,
        }
        return Conversation(
            id=f"{self.v.record_id}:{self.layer.name}:{task}",
            source=self.v.source,
            task=TASK_KIND[task],
            images=[self.v.image],
            turns=turns,
            meta=meta,
        )

    # -- tasks ---------------------------------------------------------------------------------
    def caption(self) -> Conversation | None:
        ks = sorted(self.present(), key=lambda k: -self.fracs[k])
        if not ks:
            return None
        names = self.layer.classes
        sents = []
        for i, k in enumerate(ks[:4]):
            if i == 0:
                f = self.fracs[k]
                group = T.ALMOST_ALL if f >= 0.975 else (T.ORDINAL_LEAD if f > 0.5 else T.FIRST)
            else:
                group = T.SECOND if i == 1 else T.MINOR
            sents.append(
                T.fill(
                    T.pick(self.rng, group),
                    cls=names[k],
                    pct=percent_phrase(self.fracs[k]),
                    where=self.where(k),
                )
            )
        if len(ks) > 4:
            more = [names[k] for k in ks[4:]]
            rest = more[0] if len(more) == 1 else ", ".join(more[:-1]) + " and " + more[-1]
            sents.append(f"Small amounts of {rest} also occur.")
        bg = [k for k, a in enumerate(self.layer.askable) if not a and self.fracs[k] >= 0.05]
        for k in bg:
            others = ", ".join(n for n, a in zip(names, self.layer.askable, strict=True) if a)
            sents.append(
                T.fill(T.REST, pct=percent_phrase(self.fracs[k]), cls=names[k], others=others)
            )
        if 1 - self.labelled >= 0.1:
            sents.append(
                T.fill(
                    T.UNLABELLED,
                    pct=percent_phrase(1 - self.labelled),
                    src=self.layer.kind.replace("_", " "),
                )
            )
        user = T.fill(T.pick(self.rng, T.CAPTION_PROMPTS), img=self.v.img_phrase)
        return self.conv(
            "caption",
            [Turn("user", user), Turn("assistant", " ".join(sents))],
            {"classes": [names[k] for k in ks]},
        )

    def presence(
        self, pairs: int, focus: tuple[str, ...] = (), focus_yes_rate: float = 1.0
    ) -> Conversation | None:
        """Yes/no questions: ``pairs`` random (present, absent) pairs, plus every ``focus``
        class of the layer that is clearly absent, and clearly present ones with probability
        ``focus_yes_rate``."""
        pos, neg = self.present(), self.absent()
        present = set(pos)
        foc = [k for k in neg if self.layer.classes[k] in focus]
        foc += [
            k for k in pos if self.layer.classes[k] in focus and self.rng.random() < focus_yes_rate
        ]
        # focus classes are never drawn into the random pairs (asked or deliberately skipped)
        pos = [k for k in pos if self.layer.classes[k] not in focus]
        neg = [k for k in neg if self.layer.classes[k] not in focus]
        n = min(len(pos), len(neg), pairs)
        if n == 0 and not foc:
            return None
        pos = list(self.rng.choice(pos, n, replace=False)) if n else []
        neg = list(self.rng.choice(neg, n, replace=False)) if n else []
        qs = [(int(k), True) for k in pos] + [(int(k), False) for k in neg]
        qs += [(int(k), k in present) for k in foc]
        order = self.rng.permutation(len(qs))
        turns, answers = [], []
        for j, i in enumerate(order):
            k, yes = qs[i]
            cls = self.layer.classes[k]
            img = self.v.img_phrase if j == 0 else "the image"
            prompt = T.fill(T.pick(self.rng, T.PRESENCE_PROMPTS), cls=cls, img=img)
            turns.append(Turn("user", prompt))
            # "Answer yes or no" prompts get the bare word; open ones may get a sentence.
            short = "yes or no" in prompt
            ans = (T.YES if yes else T.NO)[0] if short else T.pick(self.rng, T.YES if yes else T.NO)
            turns.append(self.grounded(k, T.fill(ans, cls=cls, where=self.where(k) if yes else "")))
            answers.append({"class": cls, "answer": "yes" if yes else "no"})
        return self.conv(
            "presence", turns, {"classes": [a["class"] for a in answers], "answers": answers}
        )

    def proportion(self) -> Conversation | None:
        ks = self.present()
        if not ks:
            return None
        k = int(self.rng.choice(ks))
        cls, pct = self.layer.classes[k], percent_phrase(self.fracs[k])
        user = T.fill(T.pick(self.rng, T.PROPORTION_PROMPTS), cls=cls, img=self.v.img_phrase)
        ans = T.fill(T.pick(self.rng, T.PROPORTION_ANSWERS), cls=cls, pct=pct)
        return self.conv(
            "proportion",
            [Turn("user", user), self.grounded(k, ans)],
            {"classes": [cls], "fraction": round(float(self.fracs[k]), 4)},
        )

    def refer(self) -> Conversation | None:
        h, w = self.v.cmap.shape
        min_px = max(4, int(self.min_region * h * w))
        cands = []
        for k in self.present():
            reg = largest_region(self.mask(k))
            if reg is None or reg[0] < min_px:
                continue
            r0, c0, r1, c1 = reg[1]
            if (r1 - r0) * (c1 - c0) >= 0.95 * h * w and self.fracs[k] >= 0.5:
                continue  # a class filling the tile: its "largest region" box says nothing
            cands.append((k, reg))
        if not cands:
            return None
        k, (npx, (r0, c0, r1, c1)) = cands[int(self.rng.integers(len(cands)))]
        xyxy = (c0 / w, r0 / h, c1 / w, r1 / h)
        text = format_box(xyxy)
        cls = self.layer.classes[k]
        user = T.fill(T.pick(self.rng, T.REFER_PROMPTS), cls=cls, img=self.v.img_phrase)
        ans = T.fill(T.pick(self.rng, T.REFER_ANSWERS), cls=cls, box=text)
        box = Box(xyxy=xyxy, text=text)
        return self.conv(
            "refer",
            [Turn("user", user), Turn("assistant", ans, boxes=[box])],
            {"classes": [cls], "region_pixels": npx, "box_pixels": [c0, r0, c1, r1]},
        )

    def segmentation(self) -> Conversation | None:
        ks = self.present()
        if not ks:
            return None
        k = int(self.rng.choice(ks))
        cls = self.layer.classes[k]
        rle = encode_mask(self.mask(k))
        user = T.fill(T.pick(self.rng, T.SEG_PROMPTS), cls=cls, img=self.v.img_phrase)
        ans = T.fill(T.pick(self.rng, T.SEG_ANSWERS), cls=cls)
        return self.conv(
            "segmentation",
            [
                Turn("user", user),
                Turn("assistant", ans, masks=[Mask(seg_index=0, rle=rle, image_index=0)]),
            ],
            {"classes": [cls], "fraction": round(float(self.fracs[k]), 4)},
        )

    def mcq(self) -> Conversation | None:
        """"Which of these covers the largest part? A. .. B. .." when one class clearly leads
        (10 points ahead of the next); the other options are the layer's other askable classes."""
        ask = [k for k, a in enumerate(self.layer.askable) if a]
        order = sorted(ask, key=lambda k: -self.fracs[k])
        if len(order) < 2 or self.fracs[order[0]] < 0.2:
            return None
        if self.fracs[order[0]] - self.fracs[order[1]] < 0.1:
            return None
        others = [int(k) for k in self.rng.permutation(order[1:])[: len(MCQ_LETTERS) - 1]]
        options = [order[0], *others]
        options = [options[i] for i in self.rng.permutation(len(options))]
        names = self.layer.classes
        letter = MCQ_LETTERS[options.index(order[0])]
        lines = "\n".join(f"{MCQ_LETTERS[i]}. {names[k]}" for i, k in enumerate(options))
        question = T.fill(T.pick(self.rng, T.MCQ_QUESTIONS), img=self.v.img_phrase)
        user = f"{question}\n{lines}\n{T.pick(self.rng, T.MCQ_INSTRUCTIONS)}"
        ans = T.pick(self.rng, T.MCQ_ANSWERS).format(letter=letter)
        return self.conv(
            "mcq",
            [Turn("user", user), Turn("assistant", ans)],
            {
                "classes": [names[order[0]]],
                "options": [names[k] for k in options],
                "answer": letter,
            },
        )

    def count(self) -> Conversation | None:
        """"How many separate water areas of at least N pixels?" for a present class (0-9)."""
        ks = self.present()
        if not ks:
            return None
        k = int(self.rng.choice(ks))
        h, w = self.v.cmap.shape
        min_px = max(4, int(self.min_region * h * w))
        n = count_regions(self.mask(k), min_px)
        if n > 9:
            return None  # a count past a handful is not what the question is for
        cls = self.layer.classes[k]
        user = T.fill(
            T.pick(self.rng, T.COUNT_PROMPTS), cls=cls, img=self.v.img_phrase, min_px=str(min_px)
        )
        ans = T.pick(self.rng, T.COUNT_ANSWERS).format(n=n)
        return self.conv(
            "count",
            [Turn("user", user), Turn("assistant", ans)],
            {"classes": [cls], "count": n, "min_pixels": min_px},
        )

    def build(
        self,
        tasks: list[str],
        presence_pairs: int,
        presence_focus: tuple[str, ...] = (),
        focus_yes_rate: float = 1.0,
    ) -> list[Conversation]:
        """The requested tasks that this tile can answer, in ``tasks`` order."""
        out = []
        for t in tasks:
            if t == "presence":
                c = self.presence(presence_pairs, presence_focus, focus_yes_rate)
            else:
                c = getattr(self, t)()
            if c is not None:
                out.append(c)
        return out
