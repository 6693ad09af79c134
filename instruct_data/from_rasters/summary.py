"""Counts of a generator run: tiles kept / skipped by reason, conversations by task and class."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Summary:
    tiles_seen: int = 0
    tiles_kept: int = 0
    tiles_skipped: Counter = field(default_factory=Counter)  # reason -> tiles
    layers_skipped: Counter = field(default_factory=Counter)  # reason -> (tile, layer) pairs
    images_written: int = 0
    conversations: int = 0
    by_task: Counter = field(default_factory=Counter)
    by_class: Counter = field(default_factory=Counter)  # "task/class" -> conversations
    by_scene: Counter = field(default_factory=Counter)
    by_split: Counter = field(default_factory=Counter)
    by_label_type: Counter = field(default_factory=Counter)
    by_modality: Counter = field(default_factory=Counter)
    presence_answers: Counter = field(default_factory=Counter)

    def add(self, rec: dict) -> None:
        meta = rec["meta"]
        self.conversations += 1
        self.by_task[meta["gen_task"]] += 1
        for c in meta.get("classes", []):
            self.by_class[f"{meta['gen_task']}/{c}"] += 1
        self.by_scene[meta["scene_id"]] += 1
        self.by_split[meta["split"]] += 1
        self.by_label_type[meta["label_type"]] += 1
        self.by_modality[rec["images"][0]["modality"]] += 1
        for a in meta.get("answers", []):
            self.presence_answers[a["answer"]] += 1

    def as_dict(self) -> dict:
        return {
            k: (dict(sorted(v.items())) if isinstance(v, Counter) else v)
            for k, v in self.__dict__.items()
        }

    def table(self) -> str:
        rows = [
            f"tiles: seen {self.tiles_seen}  kept {self.tiles_kept}  skipped {sum(self.tiles_skipped.values())}",
            *(f"  skipped ({r}): {n}" for r, n in self.tiles_skipped.most_common()),
            *(
                f"  label source skipped on a tile ({r}): {n}"
                for r, n in self.layers_skipped.most_common()
            ),
            f"images written: {self.images_written}",
            f"conversations: {self.conversations}",
        ]
        for name in (
            "by_task",
            "by_split",
            "by_scene",
            "by_label_type",
            "by_modality",
            "presence_answers",
        ):
            c: Counter = getattr(self, name)
            rows.append(
                f"{name.replace('_', ' ')}: " + ", ".join(f"{k}={n}" for k, n in sorted(c.items()))
            )
        rows.append("by task/class:")
        width = max((len(k) for k in self.by_class), default=0)
        rows += [f"  {k:<{width}}  {n}" for k, n in sorted(self.by_class.items())]
        return "\n".join(rows)
