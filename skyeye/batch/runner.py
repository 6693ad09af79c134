"""Run scenes on Ray actors (one model load per worker) or in a plain loop; resumable.

The caller holds `skyeye.scene.lock.RunLock` on ``out`` for the run (the CLI does): two
batches writing one folder at once would mix their scenes.

Ray: local by default (`ray.init(num_cpus=workers * threads)` starts a one-machine cluster), or
an existing cluster with ``address`` (``ray://head:10001`` or ``auto``); Ray places the actors,
SkyEye schedules nothing itself. The actors are created first and load the model while the
driver reads the scenes' files for their run identity; each scene is handed to an actor as soon
as it is identified (calls queue at an actor until it is up). Rows reach ``on_rows`` as soon as
they exist (the CLI rewrites the summary with them), under one progress bar.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
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

#: Receives rows as they come: the rows of entries known at once (done by an earlier run, not
#: scenes) in one call, then each analysed scene's row.
OnRows = Callable[[list[dict[str, Any]]], None]


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


def local_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int) -> int:
    """Torch threads per worker so that ``workers x threads`` fills ``cores`` without
    oversubscribing them (two OpenMP teams spinning on one core slow each other several-fold)."""
    return max(1, cores // max(workers, 1))


def classify(
    scenes: list[Scene], out: Path, prompt: str, model: str, options: dict[str, Any]
) -> Iterator[tuple[Scene, dict[str, Any] | None, dict[str, Any] | None]]:
    """Per entry, lazily (each reads the scene's files for its identity): ``(scene, row, None)``
    for an entry that needs no run (done by an earlier run of the same identity, read back;
    failed to resolve; not a scene) or ``(scene, None, identity)`` for a scene to analyse."""
    model_id: dict[str, Any] | None = None
    for scene in scenes:
        if scene.skip or scene.error or scene.source is None:
            reason = scene.skip or scene.error or "no source to read"
            status = "skipped" if scene.skip else "failed"
            yield scene, failed_row(scene, reason, status=status), None
            continue
        if model_id is None:
            model_id = model_identity(model)  # once: it may hash the model's files
        identity = scene_identity(scene, prompt, model, options, model_id)
        if is_done(out, scene, identity):
            try:
                yield scene, row_from_answer(scene, read_answer(out, scene), None), None
                continue
            except (OSError, ValueError):
                pass  # a damaged answer.json: run the scene again
        yield scene, None, identity


def may_need_a_run(scenes: list[Scene], out: Path) -> bool:
    """Whether any scene lacks a finished answer (a cheap look, no hashing): when all have one,
    the identities decide without starting workers that would likely idle."""
    from skyeye.batch.worker import RUN_FILE, scene_dir

    return any(
        not (scene_dir(out, s) / "answer.json").is_file()
        or not (scene_dir(out, s) / RUN_FILE).is_file()
        for s in scenes
        if not (s.skip or s.error or s.source is None)
    )


def run_local(
    scenes: list[Scene], out: Path, prompt: str, model: str, options: dict[str, Any],
    *, threads: int | None = None, progress: bool = True, on_rows: OnRows | None = None,
) -> BatchResult:  # fmt: skip
    """The plain Python loop: one model, scenes one after another (the baseline of the bench).
    threads: torch threads (None: torch's default, all cores)."""
    rows, todo = [], []
    for scene, row, identity in classify(scenes, out, prompt, model, options):
        if row is not None:
            rows.append(row)
        else:
            todo.append((scene, identity))
    skipped = sum(r["status"] == "done" for r in rows)
    if on_rows and rows:
        on_rows(list(rows))
    if not todo:
        return BatchResult(rows, 0, skipped)
    worker = SceneWorker(model, options, threads=threads)
    start = time.perf_counter()
    for scene, identity in tqdm(todo, desc="scenes", unit="scene", disable=not progress):
        row = worker.run(scene_payload(scene), str(out), prompt, identity)
        rows.append(row)
        if on_rows:
            on_rows([row])
    elapsed = time.perf_counter() - start
    return BatchResult(rows, len(todo), skipped, [worker.load_seconds], elapsed)


def run_ray(
    scenes: list[Scene], out: Path, prompt: str, model: str, options: dict[str, Any],
    *, workers: int = 2, address: str | None = None, threads: int | None = None,
    progress: bool = True, on_rows: OnRows | None = None,
) -> BatchResult:  # fmt: skip
    """Scenes on ``workers`` Ray actors, each loading the model once and reserving ``threads``
    CPUs (None: this machine's cores / workers locally, 1 on a cluster), one scene in flight per
    actor; a scene whose worker dies is recorded as failed and the worker replaced, the batch
    goes on."""
    runnable = [s for s in scenes if not (s.skip or s.error or s.source is None)]
    entries = classify(scenes, out, prompt, model, options)
    if not runnable or not may_need_a_run(scenes, out):
        # Nothing to analyse, or all answered already: start workers only if an identity says so.
        checked = list(entries)
        if all(row is not None for _, row, _ in checked):
            known = [row for _, row, _ in checked if row is not None]
            if on_rows:
                on_rows(list(known))
            return BatchResult(known, 0, sum(r["status"] == "done" for r in known))
        entries = iter(checked)
    import ray
    from ray.exceptions import RayError

    if threads is None:
        threads = 1 if address else threads_per_worker(workers, local_cores())
    started_here = not ray.is_initialized()
    if started_here:
        # Worker output stays in Ray's log files: failures come back as rows, the bar stays readable.
        init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            init["address"] = address
        else:
            init["num_cpus"] = max(workers, 1) * threads
        ray.init(**init)
    try:
        Worker = ray.remote(num_cpus=threads, max_restarts=0)(SceneWorker)
        n = max(1, min(workers, len(runnable)))
        # Created before the scenes are read: the actors import torch and load the model while
        # the driver hashes the scenes' files; calls queue at an actor until it is up.
        idle: deque[Any] = deque(Worker.remote(model, options, "cpu", threads) for _ in range(n))
        loads = [a.ready.remote() for a in idle]
        start = time.perf_counter()
        rows: list[dict[str, Any]] = []
        running: dict[Any, tuple[Any, Scene]] = {}
        todo: deque[tuple[Scene, dict[str, Any]]] = deque()
        known = []
        ran = 0

        def submit() -> None:
            while idle and todo:
                actor = idle.popleft()
                scene, identity = todo.popleft()
                # `.remote` exists only at run time: actor handles are typed as the class.
                call = actor.run.remote(scene_payload(scene), str(out), prompt, identity)
                running[call] = (actor, scene)

        for scene, row, identity in entries:
            if row is not None:
                known.append(row)
            else:
                assert identity is not None
                todo.append((scene, identity))
                ran += 1
                submit()
        rows.extend(known)
        if on_rows and known:
            on_rows(list(known))
        with tqdm(total=ran, desc="scenes", unit="scene", disable=not progress) as bar:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                actor, scene = running.pop(ready[0])
                try:
                    row = ray.get(ready[0])
                except RayError as err:  # the worker process died (memory, signal)
                    row = failed_row(scene, f"worker lost: {type(err).__name__}: {str(err)[:300]}")
                    actor = Worker.remote(model, options, "cpu", threads)
                idle.append(actor)
                submit()  # the next scene first, then the bookkeeping: the actor never waits
                rows.append(row)
                if on_rows:
                    on_rows([row])
                bar.update(1)
                bar.set_postfix(failed=sum(r["status"] == "failed" for r in rows))
        elapsed = time.perf_counter() - start
        load_seconds = []
        for load in loads:  # a worker that died before it was up has no load time
            try:
                load_seconds.append(ray.get(load))
            except RayError:
                pass
    finally:
        if started_here:
            ray.shutdown()
    skipped = sum(r["status"] == "done" for r in known)
    return BatchResult(rows, ran, skipped, load_seconds, elapsed)
