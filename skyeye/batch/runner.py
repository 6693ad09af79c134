"""Run scenes on Ray actors (one model load per worker) or in a plain loop; resumable.

The caller holds `skyeye.scene.lock.RunLock` on ``out`` for the run (the CLI does): two
batches writing one folder at once would mix their scenes.

Ray: local by default (`ray.init()` starts a one-machine cluster), or an existing cluster with
``address`` (``ray://head:10001`` or ``auto``); Ray places the actors, SkyEye schedules nothing
itself. Results stream back as scenes finish, under one progress bar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from skyeye.batch.inputs import Scene
from skyeye.batch.worker import (
    SceneWorker,
    failed_row,
    is_done,
    read_answer,
    row_from_answer,
    scene_identity,
    scene_payload,
)
from skyeye.scene.identity import model_identity

logger = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """rows: one summary row per entry (done before, done now, failed, skipped: not a scene).
    ran: scenes analysed in this call; skipped: scenes done by an earlier run of the same
    identity. load_seconds: model load time per worker. seconds: wall time of the scenes."""

    rows: list[dict[str, Any]]
    ran: int
    skipped: int
    load_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]


def split_done(
    scenes: list[Scene], out: Path, prompt: str, model: str, options: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[Scene, dict[str, Any]]]]:
    """(rows of scenes an earlier run of the same identity finished in ``out``, read back;
    rows of entries that cannot run: failed to resolve, or not a scene; the scenes still to run
    with their identity)."""
    done, static, todo = [], [], []
    model_id = model_identity(model)  # once: it may hash the model's files
    for scene in scenes:
        if scene.skip or scene.error or scene.source is None:
            reason = scene.skip or scene.error or "no source to read"
            static.append(failed_row(scene, reason, status="skipped" if scene.skip else "failed"))
            continue
        identity = scene_identity(scene, prompt, model, options, model_id)
        if is_done(out, scene, identity):
            try:
                done.append(row_from_answer(scene, read_answer(out, scene), None))
                continue
            except (OSError, ValueError):
                pass  # a damaged answer.json: run the scene again
        todo.append((scene, identity))
    return done, static, todo


def run_local(
    scenes: list[Scene], out: Path, prompt: str, model: str, options: dict[str, Any],
    *, threads: int | None = None, progress: bool = True,
    on_row: Callable[[dict], None] | None = None,
) -> BatchResult:  # fmt: skip
    """The plain Python loop: one model, scenes one after another (the baseline of the bench)."""
    done, static, todo = split_done(scenes, out, prompt, model, options)
    rows = done + static
    if not todo:
        return BatchResult(rows, 0, len(done))
    worker = SceneWorker(model, options, threads=threads)
    start = time.perf_counter()
    for scene, identity in tqdm(todo, desc="scenes", unit="scene", disable=not progress):
        row = worker.run(scene_payload(scene), str(out), prompt, identity)
        rows.append(row)
        if on_row:
            on_row(row)
    elapsed = time.perf_counter() - start
    return BatchResult(rows, len(todo), len(done), [worker.load_seconds], elapsed)


def run_ray(
    scenes: list[Scene], out: Path, prompt: str, model: str, options: dict[str, Any],
    *, workers: int = 2, address: str | None = None, threads: int | None = None,
    progress: bool = True, on_row: Callable[[dict], None] | None = None,
) -> BatchResult:  # fmt: skip
    """Scenes on ``workers`` Ray actors, each loading the model once; a scene whose worker dies
    is recorded as failed and the worker replaced, the batch goes on."""
    import ray
    from ray.exceptions import RayError

    done, static, todo = split_done(scenes, out, prompt, model, options)
    rows = done + static
    if not todo:
        return BatchResult(rows, 0, len(done))
    started_here = not ray.is_initialized()
    if started_here:
        # Worker output stays in Ray's log files: failures come back as rows, the bar stays readable.
        init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            init["address"] = address
        else:
            init["num_cpus"] = max(workers, 1)
        ray.init(**init)
    try:
        Worker = ray.remote(num_cpus=1, max_restarts=0)(SceneWorker)
        n = max(1, min(workers, len(todo)))
        actors = [Worker.remote(model, options, "cpu", threads) for _ in range(n)]
        # Actor handles are typed as the wrapped class; `.remote` exists only at run time.
        load_seconds = ray.get([a.ready.remote() for a in actors])  # type: ignore[union-attr]
        start = time.perf_counter()
        queue = list(todo)
        running: dict[Any, tuple[Any, Scene]] = {}

        def submit(actor) -> None:
            if queue:
                scene, identity = queue.pop(0)
                call = actor.run.remote(scene_payload(scene), str(out), prompt, identity)
                running[call] = (actor, scene)

        for actor in actors:
            submit(actor)
        with tqdm(total=len(todo), desc="scenes", unit="scene", disable=not progress) as bar:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                actor, scene = running.pop(ready[0])
                try:
                    row = ray.get(ready[0])
                except RayError as err:  # the worker process died (memory, signal)
                    row = failed_row(scene, f"worker lost: {type(err).__name__}: {str(err)[:300]}")
                    actor = Worker.remote(model, options, "cpu", threads)
                rows.append(row)
                if on_row:
                    on_row(row)
                bar.update(1)
                bar.set_postfix(failed=sum(r["status"] == "failed" for r in rows))
                submit(actor)
        elapsed = time.perf_counter() - start
    finally:
        if started_here:
            ray.shutdown()
    return BatchResult(rows, len(todo), len(done), list(load_seconds), elapsed)
