"""Training data: unified instruction records (JSONL, docs/instruction_format.md) -> model batches.

`InstructionDataset` indexes one or more JSONL files by byte offset (records and images are read
lazily, one record per `__getitem__`), checks records up front (`check()`), and turns a record
into `SkyEyeProcessor.build_training_example` output plus its `[SEG]` target masks, resized to the
model's input size, or, for a mask decoder that refines on pixels (the image processor has a
`hires_size`), kept on the grid of each image's `pixel_values_hires` (full tile resolution). `SkyEyeCollator` pads a list of examples into one batch for
`SkyEyeForConditionalGeneration.forward`.

Every problem carries the record id (or `FILE:LINE` when the id itself is unreadable), so a bad
record among millions can be found and fixed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skyeye.constants import IGNORE_INDEX, IMAGE_TOKEN, SEG_TOKEN
from skyeye.data.record_image import read_record_image, record_image_source
from skyeye.errors import ImagePathError, RecordError, UnsafePathError
from skyeye.io.raster import RasterImage
from skyeye.io.resample import resize_mask
from skyeye.io.rle import decode_rle
from skyeye.processing.processor import SkyEyeProcessor

logger = logging.getLogger(__name__)

#: Tasks whose answers point at small things (boxes, masks): their images are read at twice the
#: model input size so the antialiased resize to the input size has real pixels to average,
#: instead of a decimated (nearest-like) overview read. Captions and questions read at 1x.
READ_SCALE_BY_TASK: dict[str, float] = {
    "refer": 2.0,
    "grounding": 2.0,
    "identify": 2.0,
    "detection": 2.0,
    "segmentation": 2.0,
    "change": 2.0,
}
ON_ERROR = ("skip", "stop")


@dataclass(frozen=True)
class RecordRef:
    """Where a record lives: file and byte offset of its line (1-based line number for messages)."""

    file: str
    offset: int
    line: int


def structure_problems(record: Any) -> list[str]:
    """Problems that make a record untrainable, without touching files (empty list: fine)."""
    if not isinstance(record, dict):
        return ["not a JSON object"]
    problems: list[str] = []
    images = record.get("images", [])
    turns = record.get("turns")
    if not isinstance(images, list):
        return ["'images' must be a list"]
    if not isinstance(turns, list) or not turns:
        return ["'turns' must be a non-empty list"]
    placeholders = 0
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            problems.append(f"turns[{index}] is not an object")
            continue
        role, text = turn.get("role"), turn.get("text")
        if role != ("user", "assistant")[index % 2]:
            problems.append(f"turns[{index}].role is {role!r}; turns alternate user/assistant")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"turns[{index}] has an empty text")
            continue
        placeholders += text.count(IMAGE_TOKEN)
        masks = turn.get("masks", []) or []
        if role == "user" and SEG_TOKEN in text:
            problems.append(
                f"turns[{index}]: {SEG_TOKEN} in a user turn (only answers carry masks)"
            )
        if role == "assistant" and masks and len(masks) != text.count(SEG_TOKEN):
            problems.append(
                f"turns[{index}]: {text.count(SEG_TOKEN)} {SEG_TOKEN} but {len(masks)} masks"
            )
        for k, m in enumerate(masks):
            ok = isinstance(m, dict) and isinstance(m.get("rle"), dict) and "counts" in m["rle"]
            if not ok or not 0 <= int(m.get("image_index", 0)) < len(images):
                problems.append(
                    f"turns[{index}].masks[{k}]: needs an rle and an image_index in range"
                )
    if len(turns) % 2:
        problems.append("the last turn must be the assistant's")
    if placeholders != len(images):
        problems.append(f"{len(images)} images but {placeholders} {IMAGE_TOKEN} placeholders")
    return problems


class InstructionDataset(torch.utils.data.Dataset):
    """Unified-format conversations as training examples, images read on demand.

    Args:
        files: JSONL file(s) in the unified instruction format.
        processor: the model's processor (chat template, image processor, tokenizer).
        image_root: folder relative image paths are resolved against (default: each JSONL's folder).
        mask_size: side of the target masks (the model input size) when the model has a mask
            head; None drops masks (the answers' text, `[SEG]` included, is still trained). With
            an image processor `hires_size`, masks are instead on each image's hires grid and
            tasks read above 1x are read at least at `hires_size` (full tile resolution).
        on_error: "skip" (a record that fails to load yields None; the collator drops and counts
            it) or "stop" (raise `RecordError`).
        system_prompt: system message put before every conversation (None: none); use the one
            the model is chatted with (`skyeye.chat.session.DEFAULT_SYSTEM_PROMPT`).
        max_length: longest tokenised conversation kept (default: the processor's context).
        read_scale: images are read at `read_scale[task] * image_size` pixels on the long side
            (default `READ_SCALE_BY_TASK`, 1.0 for tasks not listed).
        allow_absolute_paths: accept absolute image paths (default: refused, as are paths that
            leave the image root; `skyeye.io.paths.resolve_image`).
    """

    def __init__(
        self,
        files: str | os.PathLike | Sequence[str | os.PathLike],
        processor: SkyEyeProcessor,
        *,
        image_root: str | os.PathLike | None = None,
        mask_size: int | None = None,
        on_error: str = "skip",
        system_prompt: str | None = None,
        max_length: int | None = None,
        read_scale: dict[str, float] | None = None,
        allow_absolute_paths: bool = False,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        if not files:
            raise ValueError("no data files given: pass at least one JSONL file")
        self.processor = processor
        self.image_root = None if image_root is None else Path(image_root)
        self.mask_size = mask_size
        self.on_error = on_error
        self.system_prompt = system_prompt
        self.max_length = max_length
        self.read_scale = dict(READ_SCALE_BY_TASK if read_scale is None else read_scale)
        self.allow_absolute_paths = allow_absolute_paths
        self.refs: list[RecordRef] = []
        for file in files:
            self.refs.extend(self._index(Path(file)))
        self.errors_seen = 0

    @staticmethod
    def _index(path: Path) -> list[RecordRef]:
        if not path.is_file():
            raise FileNotFoundError(
                f"data file {path} does not exist; check the recipe's data paths"
            )
        refs, offset = [], 0
        with path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    refs.append(RecordRef(str(path), offset, number))
                offset += len(line)
        return refs

    def __len__(self) -> int:
        return len(self.refs)

    # ------------------------------------------------------------------ records
    def raw_record(self, index: int) -> tuple[str, dict]:
        """(record id, parsed record) of `index`; raises `RecordError` for unreadable JSON."""
        ref = self.refs[index]
        label = f"{ref.file}:{ref.line}"
        with open(ref.file, "rb") as handle:
            handle.seek(ref.offset)
            line = handle.readline()
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise RecordError(
                f"invalid JSON ({err}); fix or drop that line", record_id=label
            ) from None
        record_id = record.get("id") if isinstance(record, dict) else None
        return (record_id if isinstance(record_id, str) and record_id else label), record

    def record_id(self, index: int) -> str:
        try:
            return self.raw_record(index)[0]
        except RecordError as err:
            return err.record_id or ""

    def _image_root(self, ref: RecordRef) -> Path:
        """The folder a record's relative image paths start from."""
        return self.image_root if self.image_root is not None else Path(ref.file).parent

    def _image_source(self, path: str | list[str], ref: RecordRef) -> str | list[str]:
        """The checked file(s) or band folder of a record's image path under the image root.

        Raises `UnsafePathError` (absolute, or leaving the root) or `ImagePathError` (missing, a
        FIFO/device, a folder without band files).
        """
        return record_image_source(
            path, self._image_root(ref), allow_absolute=self.allow_absolute_paths
        )

    def check(self, index: int, *, tokenize: bool = False) -> str | None:
        """The reason record `index` cannot be used (None when fine), without reading pixels.

        Checks JSON, structure, that image files exist and, with `tokenize`, the length.
        """
        try:
            record_id, record = self.raw_record(index)
        except RecordError as err:
            return err.reason
        problems = structure_problems(record)
        if problems:
            return "; ".join(problems)
        for k, image in enumerate(record.get("images", [])):
            path = image.get("path") if isinstance(image, dict) else None
            if not path:
                return f"images[{k}] has no path"
            try:
                self._image_source(path, self.refs[index])
            except (UnsafePathError, ImagePathError) as err:
                return str(err)
        if tokenize:
            text = self.processor.apply_chat_template(self._messages(record))
            length = len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])
            length += len(record["images"]) * (self.processor.num_image_tokens - 1)
            limit = self.max_length or self.processor.max_length
            if limit is not None and length > limit:
                return f"too long: {length} tokens > max_length {limit}"
        return None

    def _messages(self, record: dict) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": t["role"], "content": t["text"]} for t in record["turns"]]

    def _read_image(self, image: dict, ref: RecordRef, task: str) -> RasterImage:
        scale = self.read_scale.get(task, 1.0)
        size = int(round(self.processor.image_processor.image_size * scale))
        hires = self.processor.image_processor.hires_size
        if hires is not None and scale > 1.0:
            size = max(size, hires)
        return read_record_image(
            image,
            self._image_root(ref),
            max_size=size,
            sar_wavelength=self.processor.image_processor.sar_wavelength,
            allow_absolute=self.allow_absolute_paths,
        )

    def _masks(
        self, record: dict, hires: list[torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], list[int]]:
        masks, image_index = [], []
        assert self.mask_size is not None  # only called when the model has a mask head
        for turn in record["turns"]:
            for m in sorted(turn.get("masks", []) or [], key=lambda m: int(m["seg_index"])):
                image = int(m.get("image_index", 0))
                # Square like the image (aspect ignored), or the high-resolution image's grid;
                # the project's one mask rule (nearest).
                shape = (
                    (self.mask_size, self.mask_size)
                    if hires is None
                    else tuple(hires[image].shape[-2:])
                )
                mask = resize_mask(decode_rle(m["rle"]), shape)
                masks.append(torch.from_numpy(mask.astype(np.float32)))
                image_index.append(image)
        return masks, image_index

    def load(self, index: int) -> dict[str, Any]:
        """Record `index` as a training example; raises `RecordError` naming the record.

        Returns `build_training_example`'s dict plus `id`, `masks` (list of (S, S) float {0, 1},
        one per `[SEG]` in reading order) and `mask_image_index` (image of each mask, within the
        record).
        """
        record_id, record = self.raw_record(index)
        problems = structure_problems(record)
        if problems:
            raise RecordError("; ".join(problems), record_id=record_id)
        ref = self.refs[index]
        task = str(record.get("task", ""))
        try:
            images = [self._read_image(image, ref, task) for image in record["images"]]
            example = self.processor.build_training_example(self._messages(record), images)
            example["id"] = record_id
            example["masks"], example["mask_image_index"] = [], []
            if self.mask_size is not None:
                example["masks"], example["mask_image_index"] = self._masks(
                    record, example.get("pixel_values_hires")
                )
                seg_id = self.processor.tokenizer.convert_tokens_to_ids(SEG_TOKEN)
                n_seg = int((example["input_ids"] == seg_id).sum())
                if n_seg != len(example["masks"]):
                    raise ValueError(
                        f"{n_seg} {SEG_TOKEN} tokens after tokenising but {len(example['masks'])} masks"
                    )
        except RecordError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure is reported with the record's id
            raise RecordError(f"{type(err).__name__}: {err}", record_id=record_id) from err
        limit = self.max_length
        if limit is not None and example["input_ids"].shape[0] > limit:
            raise RecordError(
                f"too long: {example['input_ids'].shape[0]} tokens > max_length {limit}",
                record_id=record_id,
            )
        return example

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        try:
            return self.load(index)
        except RecordError as err:
            if self.on_error == "stop":
                raise
            self.errors_seen += 1
            logger.warning("skipping %s", err)
            return None


class SkyEyeCollator:
    """Pad examples into a batch for `SkyEyeForConditionalGeneration.forward`.

    Args:
        pad_token_id: id written into padded positions (they get attention 0 and label -100).
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = int(pad_token_id)

    def __call__(self, examples: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        """Returns input_ids / attention_mask / labels (B, L) right-padded; pixel_values and
        wavelengths (and pixel_values_hires when examples have them) as lists over all images in
        sample order; masks (K, S, S) (all of one size) with
        seg_image_index (K,) global image indices, or None when no example has a mask; ids; and
        n_skipped, the number of None examples (records that failed to load) dropped."""
        kept = [e for e in examples if e is not None]
        batch: dict[str, Any] = {
            "n_skipped": len(examples) - len(kept),
            "ids": [e["id"] for e in kept],
        }
        if not kept:
            return batch
        length = max(int(e["input_ids"].shape[0]) for e in kept)
        ids = torch.full((len(kept), length), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(kept), length), dtype=torch.long)
        labels = torch.full((len(kept), length), IGNORE_INDEX, dtype=torch.long)
        pixel_values: list[torch.Tensor] = []
        wavelengths: list[Any] = []
        masks: list[torch.Tensor] = []
        seg_index: list[int] = []
        hires: list[Any] = []
        for row, example in enumerate(kept):
            n = int(example["input_ids"].shape[0])
            ids[row, :n] = example["input_ids"]
            attention[row, :n] = example["attention_mask"]
            labels[row, :n] = example["labels"]
            offset = len(pixel_values)
            pixel_values.extend(example.get("pixel_values", []))
            wavelengths.extend(example.get("wavelengths", []))
            hires.extend(example.get("pixel_values_hires", []))
            masks.extend(example.get("masks", []))
            seg_index.extend(offset + i for i in example.get("mask_image_index", []))
        batch.update(input_ids=ids, attention_mask=attention, labels=labels)
        batch["pixel_values"] = pixel_values or None
        batch["wavelengths"] = wavelengths or None
        if hires:
            batch["pixel_values_hires"] = hires
        if len({tuple(m.shape) for m in masks}) > 1:
            raise ValueError(
                f"target masks of one batch differ in size {sorted({tuple(m.shape) for m in masks})}; "
                "read the images of mask records at one size (data.read_scale / hires_size)"
            )
        batch["masks"] = torch.stack(masks) if masks else None
        batch["seg_image_index"] = seg_index if masks else None
        return batch
