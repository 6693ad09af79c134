"""HTTP client of a SkyEye server (`python -m skyeye.serve`): the chat (streamed) and the jobs API.

Plain `urllib` (no requests, no torch: QGIS's Python has neither), so it runs in QGIS's Python
and in tests alike. Every failure is a `SkyEyeClientError` with one line for the message bar:
server unreachable, wrong key, the server's own 4xx message.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any


class SkyEyeClientError(Exception):
    """A request to the SkyEye server failed; the message says what happened and what to do."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class JobCancelled(SkyEyeClientError):
    """The user cancelled a job (it was deleted on the server)."""


class JobFailed(SkyEyeClientError):
    """The job failed on the server (its message says why)."""


class SkyEyeClient:
    """A SkyEye server at ``url`` (e.g. http://127.0.0.1:8000), with its API key and a timeout
    in seconds for each request (a streamed answer may take longer as a whole)."""

    def __init__(self, url: str, key: str | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        if self.url.endswith("/v1"):
            self.url = self.url[:-3]
        self.key = key or None
        self.timeout = timeout

    # ------------------------------------------------------------------ plumbing
    def _request(
        self, method: str, path: str, body: Any = None, timeout: float | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        url = path if path.startswith("http") else self.url + path
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as err:
            raise _http_error(err) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise SkyEyeClientError(
                f"cannot reach the SkyEye server at {self.url} ({reason}): start it "
                "(python -m skyeye.serve) or fix the server URL in the SkyEye settings"
            ) from None

    def get_json(self, path: str) -> Any:
        with self._request("GET", path) as response:
            return json.loads(response.read())

    def post_json(self, path: str, body: Any) -> Any:
        with self._request("POST", path, body) as response:
            return json.loads(response.read())

    def download(self, href: str, target: str) -> None:
        """Save a result file to ``target`` (written under a temporary name, then renamed)."""
        import os

        tmp = f"{target}.part"
        with self._request("GET", href) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, target)

    # ------------------------------------------------------------------ API
    def check(self) -> str:
        """The served model's id (a quick check of the URL and key)."""
        models = self.get_json("/v1/models")
        return models["data"][0]["id"]

    def chat_stream(
        self, messages: list[dict[str, Any]], max_tokens: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The chunks of a streamed answer: {"content": text} pieces, then {"skyeye": ...}."""
        # The key first, with a small request: a server refusing it answers 401 before reading
        # a large upload, and the upload then breaks off as a broken pipe instead.
        model = self.check()
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        if max_tokens:
            body["max_tokens"] = max_tokens
        with self._request("POST", "/v1/chat/completions", body) as response:
            for raw in response:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                event = json.loads(payload)
                if "error" in event:
                    raise SkyEyeClientError(f"SkyEye: {event['error'].get('message')}")
                for choice in event.get("choices", []):
                    yield choice.get("delta", {})

    def submit(self, process: str, inputs: dict[str, Any]) -> dict[str, Any]:
        return self.post_json(f"/processes/{process}/execution", {"inputs": inputs})

    def job(self, job_id: str) -> dict[str, Any]:
        return self.get_json(f"/jobs/{job_id}")

    def results(self, job_id: str) -> dict[str, Any]:
        return self.get_json(f"/jobs/{job_id}/results")

    def delete(self, job_id: str) -> None:
        with self._request("DELETE", f"/jobs/{job_id}", timeout=max(self.timeout, 130)):
            pass

    def run_job(
        self,
        process: str,
        inputs: dict[str, Any],
        progress: Callable[[float, str], None],
        cancelled: Callable[[], bool],
        poll_s: float = 0.5,
        submitted: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Submit a job and wait for it: ``submitted(job_id)`` once the server took it;
        progress(percent, message) as it runs; when ``cancelled()`` turns true the job is
        deleted on the server and `JobCancelled` raised; a failed job raises `JobFailed` with
        the server's message. Returns its results."""
        self.check()  # the key first (see chat_stream)
        job_id = self.submit(process, inputs)["jobID"]
        if submitted is not None:
            submitted(job_id)
        while True:
            if cancelled():
                self.delete(job_id)
                raise JobCancelled(f"job {job_id} cancelled; it was removed from the server")
            status = self.job(job_id)
            progress(float(status.get("progress") or 0), status.get("message") or "")
            if status["status"] == "successful":
                results = self.results(job_id)
                results["jobID"] = job_id
                return results
            if status["status"] in ("failed", "dismissed"):
                raise JobFailed(f"the SkyEye job failed: {status.get('message')}")
            time.sleep(poll_s)


def _http_error(err: urllib.error.HTTPError) -> SkyEyeClientError:
    try:
        message = json.loads(err.read())["error"]["message"]
    except (ValueError, KeyError, TypeError, OSError):
        message = err.reason
    if err.code == 401:
        return SkyEyeClientError(
            "the SkyEye server refused the API key (401): set the right key in the SkyEye settings",
            status=401,
        )
    return SkyEyeClientError(f"SkyEye server: {message} (HTTP {err.code})", status=err.code)
