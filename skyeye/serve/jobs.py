"""Jobs of the server (OGC API - Processes): a folder each under ``--jobs-dir``, one worker.

``<jobs-dir>/<id>/job.json`` is the job's state (status, progress, message, inputs, results),
rewritten atomically (`skyeye.atomic`) on every change, so a reader never sees half of it and
a killed server leaves a state it can read at the next start; ``input/`` holds an uploaded
image, ``out/`` what the job writes (`skyeye.scene`'s outputs and its ``.scene-work`` windows).

One worker thread runs the jobs one at a time on its own copy of the model: the chat's answers
capture their masks with forward hooks on the model (`skyeye.modeling.generation_hooks`), and a
scene's windows running on the same modules at the same time would be captured with them.

A server stopped while a job runs leaves it ``running`` on disk; the next start checks that the
folder still holds the job that was submitted (its identity: the hash of its process and
inputs, and of an uploaded image) and runs it again, and `skyeye.scene` reuses the windows it
finished (its own run identity). Jobs are bounded in number (``max_jobs``, and ``jobs_queue``
waiting: 429 beyond) and disk (``jobs_max_mb``: 507 for a new job, a running one fails), and
finished ones are removed after ``jobs_retention_hours``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from skyeye.atomic import TMP_PREFIX, atomic_dir, write_bytes, write_text
from skyeye.errors import GenerationCancelled, JobError, SceneCancelled, ServeRequestError
from skyeye.serve.config import ServeConfig
from skyeye.serve.job_inputs import parse_inputs
from skyeye.serve.job_run import JobContext, folder_bytes, prepare_image, run_job

logger = logging.getLogger(__name__)

STATE = "job.json"
FINISHED = ("successful", "failed", "dismissed")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
#: Seconds between retention sweeps of the worker.
SWEEP_S = 60.0
#: Longest wait of a DELETE for the running job to stop (a scene stops at its next batch).
DISMISS_WAIT_S = 120.0


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _age_hours(stamp: str | None) -> float:
    try:
        then = datetime.fromisoformat(stamp or "")
    except ValueError:
        return float("inf")
    return (datetime.now(timezone.utc) - then).total_seconds() / 3600


def identity(process: str, inputs: dict[str, Any]) -> str:
    """The job's identity: a hash of its process and inputs (upload hash included)."""
    text = json.dumps({"process": process, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _not_found(job_id: str) -> ServeRequestError:
    return ServeRequestError(
        f"no job {job_id!r} here (finished jobs are removed after the retention time, dismissed "
        "ones at once); list them with GET /jobs",
        status=404,
        kind="not_found_error",
        code="no-such-job",
    )


class JobManager:
    """The jobs of one server: submit, read, dismiss; the worker that runs them.

    Args:
        config: the server's settings (jobs folder and limits, ``--allow-files``, pixel limits).
        model_factory: loads the jobs' model (a `ChatSession`); called by the worker at its
            first job.
    """

    def __init__(self, config: ServeConfig, model_factory: Callable[[], Any]) -> None:
        assert config.jobs_dir is not None  # ServeConfig fills it
        self.config, self.folder = config, Path(config.jobs_dir)
        self._factory = model_factory
        self._session: Any = None
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._queue: list[str] = []
        self._stopping = threading.Event()
        self._current: tuple[str, threading.Event] | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ state on disk
    def job_dir(self, job_id: str) -> Path:
        if not _JOB_ID.match(job_id):
            raise _not_found(job_id)
        return self.folder / job_id

    def read(self, job_id: str) -> dict[str, Any]:
        """The job's state; 404 when there is none."""
        try:
            state = json.loads((self.job_dir(job_id) / STATE).read_text())
        except (OSError, ValueError):
            raise _not_found(job_id) from None
        return state

    def _write(self, state: dict[str, Any]) -> None:
        state["updated"] = now_iso()
        write_text(self.folder / state["id"] / STATE, json.dumps(state, indent=1) + "\n")

    def _update(self, job_id: str, **changes: Any) -> dict[str, Any] | None:
        """Read, change and write a job's state under the lock; None when it is gone."""
        with self._lock:
            try:
                state = self.read(job_id)
            except ServeRequestError:
                return None
            state.update(changes)
            self._write(state)
            return state

    def all(self) -> list[dict[str, Any]]:
        if not self.folder.is_dir():
            return []
        out = []
        for d in sorted(self.folder.iterdir()):
            if _JOB_ID.match(d.name):
                try:
                    out.append(self.read(d.name))
                except ServeRequestError:
                    continue  # removed while listing, or a folder without state
        return sorted(out, key=lambda s: s.get("created", ""))

    # ------------------------------------------------------------------ requests
    def submit(self, process_id: str, body: Any) -> dict[str, Any]:
        """Check an execution request, store the job (its image too) and queue it. 429 when too
        many jobs are kept or waiting, 507 past the disk limit, 4xx for bad inputs."""
        parsed = parse_inputs(process_id, body)
        with self._lock:
            self._make_room()
        image = prepare_image(process_id, parsed["image"], self.config)
        limit = int(self.config.jobs_max_mb * 1024 * 1024)
        upload_bytes = len(image.upload) if image.upload is not None else 0
        if self.folder.is_dir() and folder_bytes(self.folder) + upload_bytes > limit:
            with self._lock:
                self._purge_expired()
            if folder_bytes(self.folder) + upload_bytes > limit:
                raise ServeRequestError(
                    f"the jobs' folders are over this server's disk limit of "
                    f"{self.config.jobs_max_mb:g} MB (--jobs-max-mb): delete finished jobs "
                    "(DELETE /jobs/{id}) or wait for them to expire",
                    status=507,
                    code="jobs_disk_full",
                )
        job_id = uuid.uuid4().hex
        inputs = {k: v for k, v in parsed.items() if k != "image"} | {"image": image.ref}
        state: dict[str, Any] = {
            "id": job_id,
            "process": process_id,
            "status": "accepted",
            "progress": 0,
            "message": "waiting for the worker",
            "created": now_iso(),
            "started": None,
            "finished": None,
            "inputs": inputs,
            "identity": identity(process_id, inputs),
            "results": None,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_dir(self.folder / job_id) as tmp:  # all of it or nothing
            if image.upload is not None:
                write_bytes(tmp / "input" / image.ref["upload"], image.upload)
            state["updated"] = now_iso()
            write_text(tmp / STATE, json.dumps(state, indent=1) + "\n")
        with self._lock:
            self._queue.append(job_id)
            self._wake.notify_all()
        logger.info("job %s (%s) accepted", job_id, process_id)
        return state

    def _make_room(self) -> None:
        jobs = self.all()
        waiting = sum(1 for s in jobs if s["status"] == "accepted")
        if waiting >= self.config.jobs_queue:
            raise ServeRequestError(
                f"{waiting} jobs are already waiting (--jobs-queue {self.config.jobs_queue}): "
                "retry when one has started",
                status=429,
                kind="rate_limit_error",
                code="jobs_queue_full",
            )
        if len(jobs) >= self.config.max_jobs:
            self._purge_expired()
            if len(self.all()) >= self.config.max_jobs:
                raise ServeRequestError(
                    f"this server keeps at most {self.config.max_jobs} jobs (--max-jobs): "
                    "delete finished ones (DELETE /jobs/{id}) and retry",
                    status=429,
                    kind="rate_limit_error",
                    code="too_many_jobs",
                )

    def dismiss(self, job_id: str) -> dict[str, Any]:
        """Cancel a waiting or running job and remove its folder (a running job stops at its next
        batch of windows or token first); a finished job's folder is removed."""
        with self._lock:
            state = self.read(job_id)
            running = self._current is not None and self._current[0] == job_id
            if running:
                assert self._current is not None
                self._current[1].set()  # the worker stops and writes nothing more
            if job_id in self._queue:
                self._queue.remove(job_id)
        if running and not self._wait_idle(job_id, DISMISS_WAIT_S):
            logger.warning("job %s did not stop within %.0f s; removing it", job_id, DISMISS_WAIT_S)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        logger.info("job %s dismissed; its folder was removed", job_id)
        return state | {
            "status": "dismissed",
            "message": "dismissed: the job was stopped and its files removed",
            "updated": now_iso(),
        }

    def _wait_idle(self, job_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._current is None or self._current[0] != job_id:
                    return True
            self._idle.wait(0.05)
        return False

    # ------------------------------------------------------------------ worker
    def start(self) -> None:
        """Queue the jobs a stopped server left waiting or running, then start the worker."""
        with self._lock:
            self._purge_expired(leftovers=True)
            for state in self.all():
                if state["status"] in ("accepted", "running"):
                    self._requeue(state)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="skyeye-jobs", daemon=True)
        self._thread.start()

    def _requeue(self, state: dict[str, Any]) -> None:
        if state.get("identity") != identity(state["process"], state["inputs"]):
            self._finish(
                state["id"],
                "failed",
                "the job's state on disk was changed after it was submitted; submit it again",
            )
            return
        if state["status"] == "running":
            self._update(
                state["id"],
                status="accepted",
                message="resumes where it stopped (the server was restarted)",
            )
        self._queue.append(state["id"])

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the worker: a running job stops at its next batch and stays ``running`` on disk,
        so the next start resumes it."""
        self._stopping.set()
        with self._lock:
            if self._current is not None:
                self._current[1].set()
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        last_sweep = time.monotonic()
        while not self._stopping.is_set():
            with self._lock:
                if not self._queue:
                    self._wake.wait(timeout=SWEEP_S)
                if time.monotonic() - last_sweep > SWEEP_S:
                    self._purge_expired()
                    last_sweep = time.monotonic()
                if self._stopping.is_set() or not self._queue:
                    continue
                job_id = self._queue.pop(0)
                cancel = threading.Event()
                self._current = (job_id, cancel)
                self._idle.clear()
            try:
                self._run(job_id, cancel)
            finally:
                with self._lock:
                    self._current = None
                    self._idle.set()

    def _run(self, job_id: str, cancel: threading.Event) -> None:
        state = self._update(job_id, status="running", started=now_iso(), message="starting")
        if state is None:
            return  # dismissed before it started
        folder = self.folder / job_id

        def progress(percent: int, message: str) -> None:
            if cancel.is_set():
                raise SceneCancelled(f"job {job_id} stopped")
            with self._lock:
                if not cancel.is_set():
                    self._update(job_id, progress=max(0, min(99, percent)), message=message)

        try:
            if self._session is None:
                progress(0, "loading the model")
                self._session = self._factory()
            context = JobContext(folder, self.config, self._session, cancel, progress)
            results = run_job(state, context)
        except (SceneCancelled, GenerationCancelled):
            if self._stopping.is_set():
                logger.info(
                    "job %s interrupted by the server's stop; it resumes at the next start", job_id
                )
            return  # dismissed: dismiss() removes the folder
        except ServeRequestError as err:
            self._finish(job_id, "failed", str(err))
        except (JobError, ValueError, OSError) as err:
            self._finish(job_id, "failed", _hide(str(err), folder))
        except Exception as err:  # noqa: BLE001 - one job's failure never stops the worker
            logger.exception("job %s failed", job_id)
            self._finish(
                job_id, "failed", f"internal error ({type(err).__name__}); see the server log"
            )
        else:
            self._finish(job_id, "successful", "done", results=results)

    def _finish(self, job_id: str, status: str, message: str, **more: Any) -> None:
        with self._lock:
            current = self._current
            if current is not None and current[0] == job_id and current[1].is_set():
                return  # dismissed meanwhile: nothing more is written
            if status == "successful":
                more["progress"] = 100
            self._update(job_id, status=status, message=message, finished=now_iso(), **more)
        logger.info("job %s %s: %s", job_id, status, message)

    def _purge_expired(self, leftovers: bool = False) -> None:
        """Remove finished jobs past the retention time and, at start-up (``leftovers``; never
        later: a submission may be writing one), half-written job folders of a killed server."""
        if not self.folder.is_dir():
            return
        for d in self.folder.iterdir() if leftovers else ():
            if d.name.startswith((TMP_PREFIX, ".old-")):
                shutil.rmtree(d, ignore_errors=True)
        for state in self.all():
            if state["status"] in FINISHED and (
                _age_hours(state.get("finished")) > self.config.jobs_retention_hours
            ):
                shutil.rmtree(self.folder / state["id"], ignore_errors=True)
                logger.info(
                    "job %s removed (finished over %g h ago)",
                    state["id"],
                    self.config.jobs_retention_hours,
                )


def _hide(text: str, folder: Path) -> str:
    """A message without the server's own paths (the job's folder)."""
    return text.replace(str(folder), "<job>")
