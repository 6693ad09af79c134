"""The held-out driver: ``from_rasters`` tiles questioned through `ChatSession`, one fresh
conversation per question, each task's baselines computed beside the model in the same loop.

`evaluate_heldout` is what the skyeye-tiny card reports (`finetune.validate_skyeye_tiny` names
the tasks and splits) and what ``python -m skyeye.evaluate --train TRAIN.jsonl`` runs for one
task: the same code, so the same rows. Per tile: the image is read once; every record whose
``meta.gen_task`` a task asks gives that task's questions (`Task.questions`), the model's reply is
read by the task (`Task.read`) and each of `Task.baselines` adds its columns (one loop,
`skyeye.evaluation.driver.ask_question`, shared with the record runner); the blocks are
`Task.summarise` of the rows plus the share of answers in the asked shape. Tiles are read by
`skyeye.data.record_image.read_record_image`, as training reads them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from skyeye.data.record_image import read_record_image
from skyeye.evaluation.driver import Asker, ask_question
from skyeye.evaluation.priors import training_priors
from skyeye.evaluation.tasks import TileContext, get_task
from skyeye.evaluation.tasks.base import Row, Rows
from skyeye.evaluation.tasks.refseg import RefsegTask, hand_drawn

logger = logging.getLogger(__name__)

#: Every held-out task, in the order of the card's blocks.
HELD_OUT_TASKS = ("presence", "amount", "refseg", "mcq", "count", "grounding")
#: The answer shapes counted, in report order (`Task.shape` names one per task).
SHAPES = ("letter", "yes_no", "number", "box", "mask")


def _stable(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


def open_asker(
    model: str | Path,
    *,
    settings: Any = None,
    dtype: Any = None,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
) -> Asker:
    """An `Asker` on `load_chat`'s session of ``model`` (name, folder or hub id)."""
    from skyeye.chat.session import load_chat

    return Asker(
        load_chat(model, device=device, dtype=dtype, cache_dir=cache_dir, settings=settings)
    )


def read_tile(image: dict[str, Any], root: Path, sar_wavelength: float | None) -> Any:
    """A record's tile at full size, read as training reads it (`read_record_image`)."""
    return read_record_image(image, root, sar_wavelength=sar_wavelength)


def select_tiles(
    by_tile: dict[str, list[dict]], has_water_mask: Callable[[str], bool], max_tiles: int
) -> list[str]:
    """Up to ``max_tiles`` tiles, taken from the held-out scenes in turn (so a large scene does
    not crowd out a small one); within a scene, tiles with a water mask first, then a stable
    hash order, so the subset does not depend on the file order."""
    scenes: dict[str, list[str]] = defaultdict(list)
    for path, recs in by_tile.items():
        scenes[recs[0]["meta"]["scene_id"]].append(path)
    queues = [
        sorted(paths, key=lambda t: (not has_water_mask(t), _stable(t)))
        for _, paths in sorted(scenes.items())
    ]
    out: list[str] = []
    while len(out) < max_tiles and any(queues):
        for q in queues:
            if q and len(out) < max_tiles:
                out.append(q.pop(0))
    return out


def _common(rec: dict[str, Any]) -> Row:
    """The fields every row of a record carries."""
    meta = rec["meta"]
    return {
        "id": rec["id"],
        "scene": meta["scene_id"],
        "label_type": meta["label_type"],
        "band_subset": meta.get("band_subset"),
        "label_source": meta.get("label_source"),
    }


def held_out_tiles(val: Path, max_tiles: int) -> tuple[dict[str, list[dict]], list[str]]:
    """(records by tile path, the tiles asked): up to ``max_tiles`` tiles by `select_tiles`.

    Tiles are picked among those of every held-out task, whichever are asked: one task alone is
    asked on the tiles the card asks it on.
    """
    with open(val, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    questioned = set().union(*(get_task(name).gen_tasks for name in HELD_OUT_TASKS))
    by_tile: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        if rec["meta"].get("gen_task") in questioned:
            by_tile[rec["images"][0]["path"]].append(rec)

    def has_water_mask(path: str) -> bool:
        return any(
            r["meta"]["gen_task"] == "segmentation" and "<p>water</p>" in r["turns"][1]["text"]
            for r in by_tile[path]
        )

    return by_tile, select_tiles(by_tile, has_water_mask, max_tiles)


def validate_tiles(
    asker: Asker,
    val: Path,
    priors: dict[str, Any],
    max_tiles: int,
    ndwi_threshold: float = 0.0,
    vv_db_threshold: float = -15.0,
    tasks: Sequence[str] = HELD_OUT_TASKS,
) -> dict[str, Any]:
    """Rows of every question of ``tasks`` on up to ``max_tiles`` held-out tiles of ``val``.

    With the refseg task, every hand-drawn tile the budget leaves out is asked for its water
    mask alone (rows ``water_hand``): the hand-labelled numbers are measured on all of them.
    """
    root = val.parent
    chosen_tasks = [get_task(name) for name in tasks]
    by_tile, tiles = held_out_tiles(val, max_tiles)
    sar_wl = asker.session.processor.image_processor.sar_wavelength
    rows: Rows = {t.row_key: [] for t in chosen_tasks}
    refseg = next((t for t in chosen_tasks if isinstance(t, RefsegTask)), None)
    if refseg is not None:
        rows["water_hand"] = []
    asked: set[str] = set()

    def context(image: Any, rec: dict[str, Any]) -> TileContext:
        return TileContext(
            asker,
            image,
            rec,
            priors,
            ndwi_threshold=ndwi_threshold,
            vv_db_threshold=vv_db_threshold,
            asked=asked,
        )

    for path in tqdm(tiles, desc="held-out tiles", unit="tile"):
        recs = by_tile[path]
        image = read_tile(recs[0]["images"][0], root, sar_wl)
        for rec in recs:
            ctx = context(image, rec)
            for task in chosen_tasks:
                if rec["meta"]["gen_task"] in task.gen_tasks:
                    for question in task.questions(rec, ctx):
                        rows[task.row_key].append(ask_question(task, question, ctx, _common(rec)))
    if refseg is not None:
        chosen = set(tiles)
        rest = [p for p in sorted(by_tile, key=_stable) if p not in chosen]
        for path in tqdm(rest, desc="hand-labelled water tiles", unit="tile"):
            for rec in by_tile[path]:
                common = _common(rec)
                if rec["meta"]["gen_task"] != "presence" or not hand_drawn(
                    common, refseg.hand_labelled_scenes
                ):
                    continue
                image = read_tile(rec["images"][0], root, sar_wl)
                ctx = context(image, rec)
                questions = refseg.questions(rec, ctx)
                if questions:
                    rows["water_hand"].append(ask_question(refseg, questions[0], ctx, common))
                    break
    return {**rows, "tiles": len(tiles)}


def answer_shapes(rows: Rows, tasks: Sequence[str] = HELD_OUT_TASKS) -> dict[str, float]:
    """Share of answers in the shape the question asks for, per shape (flat, as model cards read
    it: ``letter_in_shape``, ``letter_n``, ...): letter (mcq), yes_no (presence), number
    (proportion: it states a share; count: it starts with a whole number), box (grounding: it
    has a box), mask (water: it has a mask)."""
    kinds: dict[str, list[bool]] = {kind: [] for kind in SHAPES}
    for task in (get_task(name) for name in tasks):
        if task.shape is not None:
            kind, column = task.shape
            kinds[kind] += [_in_shape(r[column]) for r in rows.get(task.row_key, [])]
    out: dict[str, float] = {}
    for kind in SHAPES:
        if kinds[kind]:
            out[f"{kind}_in_shape"] = float(np.mean(kinds[kind]))
            out[f"{kind}_n"] = len(kinds[kind])
    return out


def _in_shape(value: Any) -> bool:
    return value is not None and value is not False


def summarise(rows: Rows, tasks: Sequence[str] = HELD_OUT_TASKS) -> dict[str, Any]:
    """Metric blocks (model beside its baselines) of every task, then the answer shapes."""
    out: dict[str, Any] = {}
    for name in tasks:
        out.update(get_task(name).summarise(rows))
    out["answer_shape"] = answer_shapes(rows, tasks)
    return out


def evaluate_heldout(
    asker: Asker,
    val: Path,
    train: Path,
    *,
    tasks: Sequence[str] = HELD_OUT_TASKS,
    max_tiles: int = 400,
    ndwi_threshold: float = 0.0,
    vv_db_threshold: float = -15.0,
) -> dict[str, Any]:
    """``{"tasks": blocks, "priors": ..., "rows": ...}`` of ``tasks`` on the held-out tiles of
    ``val``, the majority baselines counted in ``train``; every block names its scenes."""
    priors = training_priors(train)
    rows = validate_tiles(
        asker, val, priors, max_tiles, ndwi_threshold, vv_db_threshold, tasks=tasks
    )
    blocks = summarise(rows, tasks)
    # The scenes of the tiles asked (not of one task's rows): every task's block names the same.
    by_tile, tiles = held_out_tiles(val, max_tiles)
    held_out = sorted({by_tile[t][0]["meta"]["scene_id"] for t in tiles})
    for block in blocks.values():
        block.setdefault("dataset", "held-out scenes " + ", ".join(held_out))
    return {"tasks": blocks, "priors": priors, "rows": rows}
