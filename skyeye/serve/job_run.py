"""What a job does: its image checked and stored at submission (`prepare_image`), then run by
the worker (`run_job`): `ask` answers one question about one image through the chat's request
path, `analyze-scene` runs `skyeye.scene.analyze_scene` into the job's ``out/`` folder.

Every file a job opens is read under a `skyeye.io.policy.ReadPolicy` (no VRT, sizes checked
from the header, every file inside ``--allow-files`` or the job's own ``input/`` folder after
symbolic links), checked again when the job runs: the allowed folder may have changed since.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyeye.atomic import atomic_path, write_text
from skyeye.errors import JobError
from skyeye.io.gdal import ReadOptions
from skyeye.io.policy import ReadPolicy
from skyeye.serve.config import ServeConfig
from skyeye.serve.job_inputs import check_source, decode_upload, local_path

LABEL = "inputs.image"
#: Seconds between checks of the jobs' disk use while a scene runs.
DISK_CHECK_S = 5.0


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (links not followed)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed while counting
    return total


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class PreparedImage:
    """ref: what the job's state records ({"upload": name, "sha256": ...} or {"path": ...});
    upload: the uploaded bytes to store in the job's ``input/`` folder (None for a path)."""

    ref: dict[str, Any]
    upload: bytes | None


def _max_pixels(process: str, config: ServeConfig) -> int:
    return config.scene_max_pixels if process == "analyze-scene" else config.max_pixels


def prepare_image(process: str, ref: str, config: ServeConfig) -> PreparedImage:
    """Check a job's image before it is queued: 400 / 403 / 413 naming ``inputs.image``."""
    limit = _max_pixels(process, config)
    if ref.startswith("data:"):
        data, suffix = decode_upload(ref)
        name = f"image{suffix}"
        with tempfile.TemporaryDirectory(prefix="skyeye-job-") as tmp:
            (Path(tmp) / name).write_bytes(data)
            check_source(Path(tmp) / name, ReadPolicy(root=Path(tmp), max_pixels=limit), LABEL)
        return PreparedImage({"upload": name, "sha256": _sha256(data)}, data)
    path = local_path(ref, config.allow_files)
    check_source(path, ReadPolicy(root=config.allow_files, max_pixels=limit), LABEL)
    return PreparedImage({"path": str(path)}, None)


@dataclass
class JobContext:
    """What a running job gets: its folder, the server's settings, the jobs' `ChatSession`, the
    cancel event (set by DELETE or the server's stop) and progress(percent, message), which
    raises `SceneCancelled` once the job is cancelled."""

    folder: Path
    config: ServeConfig
    session: Any
    cancel: threading.Event
    progress: Callable[[int, str], None]


def _source(state: dict[str, Any], ctx: JobContext) -> tuple[Path, Path]:
    """(the policy's root, the image path) of a job, checked again now; an upload must be the
    bytes that were submitted (its hash) before anything is computed from it."""
    image = state["inputs"]["image"]
    limit = _max_pixels(state["process"], ctx.config)
    if "upload" in image:
        root = ctx.folder / "input"
        path = root / image["upload"]
        try:
            same = _sha256(path.read_bytes()) == image["sha256"]
        except OSError:
            same = False
        if not same:
            raise JobError(
                "the job's uploaded image is missing or changed on disk; submit the job again"
            )
    else:
        if ctx.config.allow_files is None:
            raise JobError(
                "this server no longer reads files (--allow-files is not set); "
                "submit the job again with the image as a data URL"
            )
        root, path = ctx.config.allow_files, Path(image["path"])
    check_source(path, ReadPolicy(root=root, max_pixels=limit), LABEL)
    return root, path


def run_job(state: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Run the job; its results ({"answer", "files", ...}) for its state."""
    if state["process"] == "ask":
        return _ask(state, ctx)
    return _scene(state, ctx)


def _ask(state: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from skyeye.chat.reply_geo import reply_extension
    from skyeye.grounding.geo import transform_for_shape, write_mask_geotiff
    from skyeye.serve.conversation import build_session

    root, path = _source(state, ctx)
    inputs = state["inputs"]
    part = {"type": "image_url", "image_url": {"url": path.as_uri()}}
    if inputs["bands"]:
        part["skyeye"] = inputs["bands"]
    messages = [{"role": "user", "content": [part, {"type": "text", "text": inputs["text"]}]}]
    settings = dataclasses.replace(ctx.session.settings, max_new_tokens=ctx.config.max_new_tokens)
    ctx.progress(5, "reading the image")
    session, question, _ = build_session(
        ctx.session, messages, settings, allow_files=root, max_pixels=ctx.config.max_pixels
    )
    ctx.progress(10, "answering")
    reply = session.ask(question, cancel=ctx.cancel)
    ctx.progress(90, "writing the results")
    extension = reply_extension(reply, session.images)
    out = ctx.folder / "out"
    files = ["answer.json"]
    image = session.images[-1]
    for k, mask in enumerate(reply.masks):
        if image.transform is None or image.crs is None:
            break
        name = f"mask_{k + 1}.tif"
        transform = transform_for_shape(image.transform, image.data.shape[1:], mask.shape)
        with atomic_path(out / name) as tmp:
            write_mask_geotiff(tmp, mask, transform=transform, crs=image.crs)
        files.append(name)
    for key, name in (("masks_geojson", "mask.geojson"), ("boxes_geojson", "boxes.geojson")):
        if extension[key] is not None:
            write_text(out / name, json.dumps(extension[key]))
            files.append(name)
    answer = {"answer": reply.text, "finish_reason": reply.finish_reason, "skyeye": extension}
    write_text(out / "answer.json", json.dumps(answer, indent=1) + "\n")
    area = [m["area_m2"] for m in extension["masks"] if m["area_m2"] is not None]
    return {
        "answer": reply.text,
        "area_ha": round(sum(area) / 1e4, 4) if area else None,
        "files": sorted(files),
    }


def _scene(state: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from skyeye.scene import analyze_scene
    from skyeye.scene.config import SceneConfig

    _, path = _source(state, ctx)
    inputs, out = state["inputs"], ctx.folder / "out"
    limit = int(ctx.config.jobs_max_mb * 1024 * 1024)
    jobs_folder = ctx.folder.parent
    last_check = [0.0]

    def on_windows(done: int, total: int) -> None:
        if time.monotonic() - last_check[0] > DISK_CHECK_S:
            last_check[0] = time.monotonic()
            if folder_bytes(jobs_folder) > limit:
                raise JobError(
                    f"the jobs' folders passed this server's disk limit of "
                    f"{ctx.config.jobs_max_mb:g} MB (--jobs-max-mb) while this scene ran; "
                    "delete finished jobs or ask for a smaller bbox, then submit it again"
                )
        ctx.progress(int(100 * done / max(total, 1)), f"{done} of {total} windows")

    ctx.progress(1, "opening the scene")
    try:
        result = analyze_scene(
            str(path),
            inputs["text"],
            out,
            SceneConfig(
                resume=True,
                progress=False,
                # Read as request input: no sibling files, side metadata or network for GDAL.
                read_options=ReadOptions(untrusted=True),
                **inputs["options"],
                **inputs["bands"],
            ),
            model=ctx.session,
            progress_callback=on_windows,
        )
    except JobError:
        import shutil

        shutil.rmtree(out, ignore_errors=True)  # the disk is what this job ran out of
        raise
    answer = dict(result.answer)
    answer["scene"] = dict(answer.get("scene") or {}, source=LABEL)  # not the server's path
    write_text(result.paths["answer"], json.dumps(answer, indent=1, ensure_ascii=False) + "\n")
    return {
        "answer": result.text,
        "area_ha": (answer.get("mask") or {}).get("area_ha"),
        "files": sorted(p.name for p in result.paths.values() if p.is_file()),
        "windows": {
            "total": result.windows_total,
            "run_now": result.windows_run,
            "skipped": result.windows_skipped,
        },
    }
