"""One scene through the whole-scene pipeline, on a worker that loaded the model once.

`SceneWorker` is a plain class: Ray wraps it as an actor (`skyeye.batch.runner`), the plain loop
uses it as is. A failing scene never raises: its row says ``status: failed`` and why.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from skyeye.atomic import write_text
from skyeye.batch.inputs import Scene
from skyeye.scene.identity import identity_differences, run_identity

logger = logging.getLogger(__name__)

#: Exceptions that mean "this scene is bad" (reported as such); others are reported with their type.
BAD_INPUT = (ValueError, OSError)
#: The identity of the run that wrote a scene's answer.json, beside it (written after it).
RUN_FILE = "batch-run.json"
#: Options that change how fast a scene runs, never its answer (windows per model call).
SPEED_OPTIONS = {"batch"}


def scene_dir(out: Path, scene: Scene) -> Path:
    return out / "scenes" / scene.key


def scene_identity(
    scene: Scene, prompt: str, model: str, options: dict[str, Any], model_id: dict | None = None
) -> dict[str, Any]:
    """The identity of this batch's run of `scene` (`skyeye.scene.identity.run_identity`): the
    prompt, the model, the options that change answers, and the scene's files."""
    settings = {k: v for k, v in options.items() if k not in SPEED_OPTIONS}
    settings |= {"band_names": scene.band_names, "wavelengths": scene.wavelengths}
    return run_identity(prompt, model, settings, scene.source or [], model_id=model_id)


def is_done(out: Path, scene: Scene, identity: dict[str, Any]) -> bool:
    """A scene is done when its answer.json (written last, atomically) exists and the run that
    wrote it (RUN_FILE) has this run's identity; the log says why an answer is not reused."""
    folder = scene_dir(out, scene)
    if not (folder / "answer.json").is_file():
        return False
    try:
        previous = json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        previous = None
    if isinstance(previous, dict) and previous.get("id") == identity["id"]:
        return True
    logger.warning(
        "%s: the answer in %s is of another run (changed: %s): analysing it again",
        scene.label,
        folder,
        identity_differences(previous, identity),
    )
    return False


def row_from_answer(scene: Scene, answer: dict[str, Any], seconds: float | None) -> dict[str, Any]:
    """The summary row of a finished scene from its answer.json."""
    info, mask = answer.get("scene") or {}, answer.get("mask") or {}
    return {
        "key": scene.key,
        "scene_id": scene.scene_id or info.get("id") or scene.key,
        "datetime": scene.datetime or info.get("datetime"),
        "source": scene.label,
        "status": "done",
        "reason": None,
        "answer": answer.get("answer"),
        "found": answer.get("found"),
        "area_m2": mask.get("area_m2"),
        "share_of_valid": mask.get("share_of_valid"),
        "seconds": seconds,
        "scene_info": info,
    }


def failed_row(
    scene: Scene, reason: str, seconds: float | None = None, status: str = "failed"
) -> dict[str, Any]:
    """The row of a scene that failed (or, with status "skipped", an entry that is not one)."""
    return {
        "key": scene.key,
        "scene_id": scene.scene_id or scene.key,
        "datetime": scene.datetime,
        "source": scene.label,
        "status": status,
        "reason": reason,
        "answer": None,
        "found": None,
        "area_m2": None,
        "share_of_valid": None,
        "seconds": seconds,
        "scene_info": {},
    }


class SceneWorker:
    """Loads the model once (``model``: name, folder or hub id) and analyses scenes with it.

    options: `skyeye.scene.SceneConfig` fields (window, overlap, batch, gsd, crs,
    max_new_tokens...; plain data: they travel to Ray actors and make the batch's run identity).
    threads: torch threads of this worker (None leaves torch's default).
    """

    def __init__(
        self, model: str, options: dict[str, Any], device: str = "cpu", threads: int | None = None
    ) -> None:
        import torch

        from skyeye.chat.session import GenerationSettings, load_chat

        if threads:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        settings = GenerationSettings(max_new_tokens=options.get("max_new_tokens", 64))
        self.chat = load_chat(model, device=device, settings=settings)
        self.load_seconds = time.perf_counter() - start
        self.options = options

    def ready(self) -> float:
        """Seconds the model took to load (also: the worker is up)."""
        return self.load_seconds

    def run(
        self, scene_dict: dict[str, Any], out: str, prompt: str, identity: dict[str, Any]
    ) -> dict[str, Any]:
        """Analyse one scene into ``out/scenes/<key>`` and record `identity` (its
        `scene_identity`) beside its answer; returns its summary row."""
        from skyeye.scene import SceneConfig, analyze_scene

        scene = Scene(**scene_dict)
        if scene.skip:
            return failed_row(scene, scene.skip, status="skipped")
        if scene.error or scene.source is None:
            return failed_row(scene, scene.error or "no source to read")
        start = time.perf_counter()
        folder = scene_dir(Path(out), scene)
        try:
            # An earlier run's record goes first: killed halfway, the old answer.json must not
            # pass for this run's.
            (folder / RUN_FILE).unlink(missing_ok=True)
            config = SceneConfig(**self.options, progress=False)
            if scene.band_names and scene.wavelengths:
                config = config.replace(band_names=scene.band_names, wavelengths=scene.wavelengths)
            result = analyze_scene(scene.source, prompt, folder, config, model=self.chat)
            answer = result.answer
            write_text(folder / RUN_FILE, json.dumps(identity, indent=1, sort_keys=True))
        except BAD_INPUT as err:
            return failed_row(scene, f"{type(err).__name__}: {err}", time.perf_counter() - start)
        except Exception as err:  # a bug or a resource problem: still one row, never a stop
            logger.error("scene %s failed:\n%s", scene.label, traceback.format_exc())
            return failed_row(scene, f"{type(err).__name__}: {err}", time.perf_counter() - start)
        return row_from_answer(scene, answer, time.perf_counter() - start)


def scene_payload(scene: Scene) -> dict[str, Any]:
    """What travels to a worker (plain data, cheap to serialise)."""
    return asdict(scene)


def read_answer(out: Path, scene: Scene) -> dict[str, Any]:
    return json.loads((scene_dir(out, scene) / "answer.json").read_text())
