"""The OGC API - Processes routes of the server: ``/processes``, ``/jobs`` (see docs/serve.md).

``POST /processes/{id}/execution`` answers 201 with the job's status and a ``Location`` header;
``GET /jobs/{id}`` gives status (accepted, running, successful, failed, dismissed), progress
0-100 and a message; ``GET /jobs/{id}/results`` the answer and links to its files, each at
``/jobs/{id}/results/{file}``; ``DELETE /jobs/{id}`` stops a job and removes its folder. Errors
are the server's OpenAI-shaped JSON; the API key check covers these routes as every other.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from skyeye.errors import ServeRequestError
from skyeye.serve.config import ServeConfig
from skyeye.serve.job_inputs import PROCESSES, process_or_404
from skyeye.serve.jobs import JobManager
from skyeye.serve.lifespan import run_with_app
from skyeye.serve.params import parse_body

#: Result files -> media type (nothing else under a job's ``out/`` is served).
MEDIA_TYPES = {
    "answer.json": "application/json",
    "mask.tif": "image/tiff; application=geotiff; profile=cloud-optimized",
    "mask.geojson": "application/geo+json",
    "boxes.geojson": "application/geo+json",
    "mask.gpkg": "application/geopackage+sqlite3",
    "preview.png": "image/png",
}


def _media_type(name: str) -> str | None:
    if name.startswith("mask_") and name.endswith(".tif") and name[5:-4].isdigit():
        return "image/tiff; application=geotiff"
    return MEDIA_TYPES.get(name)


def status_info(state: dict[str, Any]) -> dict[str, Any]:
    """A job's state as an OGC ``statusInfo`` (its inputs and results stay server-side)."""
    job_id = state["id"]
    links = [{"href": f"/jobs/{job_id}", "rel": "self", "type": "application/json"}]
    if state["status"] == "successful":
        links.append(
            {
                "href": f"/jobs/{job_id}/results",
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/results",
                "type": "application/json",
            }
        )
    return {
        "jobID": job_id,
        "processID": state["process"],
        "type": "process",
        "status": state["status"],
        "message": state.get("message"),
        "progress": state.get("progress"),
        "created": state.get("created"),
        "started": state.get("started"),
        "finished": state.get("finished"),
        "updated": state.get("updated"),
        "links": links,
    }


def _summary(process: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "title", "description", "version", "jobControlOptions")
    return {k: process[k] for k in keys} | {
        "links": [{"href": f"/processes/{process['id']}", "rel": "self"}]
    }


def register_processes(
    app: FastAPI,
    config: ServeConfig,
    model_factory: Callable[[], Any],
    read_body: Callable[[Request, int], Awaitable[bytes | bytearray]],
) -> JobManager:
    """Add the processes and jobs routes to ``app``; the worker starts and stops with the app.
    ``read_body``: the chat's body reader (its size limit, 413, and disconnect rule)."""
    jobs = JobManager(config, model_factory)
    app.state.jobs = jobs
    run_with_app(app, stop=jobs.stop, start=jobs.start)

    @app.get("/processes")
    async def list_processes() -> dict[str, Any]:
        return {"processes": [_summary(p) for p in PROCESSES.values()], "links": []}

    @app.get("/processes/{process_id}")
    async def describe_process(process_id: str) -> dict[str, Any]:
        return process_or_404(process_id)

    @app.post("/processes/{process_id}/execution", status_code=201)
    async def execute(process_id: str, request: Request) -> JSONResponse:
        process_or_404(process_id)
        body = await run_in_threadpool(
            parse_body, await read_body(request, config.max_request_bytes)
        )
        state = await run_in_threadpool(jobs.submit, process_id, body)
        return JSONResponse(
            status_info(state), status_code=201, headers={"Location": f"/jobs/{state['id']}"}
        )

    @app.get("/jobs")
    async def list_jobs() -> dict[str, Any]:
        states = await run_in_threadpool(jobs.all)
        return {"jobs": [status_info(s) for s in states], "links": []}

    @app.get("/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        return status_info(await run_in_threadpool(jobs.read, job_id))

    @app.delete("/jobs/{job_id}")
    async def dismiss_job(job_id: str) -> dict[str, Any]:
        return status_info(await run_in_threadpool(jobs.dismiss, job_id))

    @app.get("/jobs/{job_id}/results")
    async def job_results(job_id: str) -> dict[str, Any]:
        state = await run_in_threadpool(jobs.read, job_id)
        _ready_or_error(state)
        folder = jobs.job_dir(job_id) / "out"
        answer = json.loads(await run_in_threadpool((folder / "answer.json").read_text))
        results = state["results"] or {}
        links = [
            {
                "href": f"/jobs/{job_id}/results/{name}",
                "rel": "enclosure",
                "type": _media_type(name),
                "title": name,
            }
            for name in results.get("files", [])
            if _media_type(name) is not None
        ]
        return {
            "jobID": job_id,
            "processID": state["process"],
            "answer": results.get("answer"),
            "area_ha": results.get("area_ha"),
            "windows": results.get("windows"),
            "result": answer,
            "links": links,
        }

    @app.get("/jobs/{job_id}/results/{name}")
    async def job_result_file(job_id: str, name: str) -> FileResponse:
        state = await run_in_threadpool(jobs.read, job_id)
        _ready_or_error(state)
        media = _media_type(name)
        path = jobs.job_dir(job_id) / "out" / name
        if media is None or name not in (state["results"] or {}).get("files", []):
            raise ServeRequestError(
                f"job {job_id} has no result file {name!r}; GET /jobs/{job_id}/results lists them",
                status=404,
                kind="not_found_error",
                code="no-such-result",
            )
        return FileResponse(path, media_type=media, filename=name)

    return jobs


def _ready_or_error(state: dict[str, Any]) -> None:
    """404 until a job has succeeded (its message says why when it failed)."""
    if state["status"] == "successful":
        return
    if state["status"] == "failed":
        message = f"job {state['id']} failed: {state.get('message')}"
    else:
        message = f"job {state['id']} is {state['status']}; its results are not ready yet"
    raise ServeRequestError(message, status=404, kind="not_found_error", code="result-not-ready")
