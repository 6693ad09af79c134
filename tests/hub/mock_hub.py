"""A minimal local stand-in for the Hugging Face Hub HTTP API (create repo, preupload, commit).

It implements just what `HfApi.create_repo` + `HfApi.upload_folder` call for small files (the
"regular" upload mode: file contents inline, base64, in the NDJSON commit payload), and stores
what it receives so tests can compare it byte for byte with the local folder.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml


class MockHub:
    """Serve on 127.0.0.1:<free port>; `.url` is the endpoint for `HfApi(endpoint=...)`."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.commits: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _reply(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hub.requests.append(("POST", self.path))
                hub.auth.append(self.headers.get("authorization"))
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts == ["api", "validate-yaml"]:
                    errors = hub.validate_card(json.loads(body)["content"])
                    return self._reply(400 if errors else 200, {"errors": errors, "warnings": []})
                if parts[:3] == ["api", "repos", "create"]:
                    req = json.loads(body)
                    repo = f"{req.get('organization') or 'user'}/{req['name']}"
                    hub.repos.setdefault(repo, {})
                    return self._reply(200, {"url": f"{hub.url}/{repo}", "name": repo})
                if parts[:2] == ["api", "models"] and len(parts) >= 6:
                    repo, action = f"{parts[2]}/{parts[3]}", parts[4]
                    if repo not in hub.repos:
                        return self._reply(404, {"error": f"Repository {repo} not found"})
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        return self._reply(
                            200,
                            {
                                "files": [
                                    {
                                        "path": f["path"],
                                        "uploadMode": "regular",
                                        "shouldIgnore": False,
                                    }
                                    for f in files
                                ]
                            },
                        )
                    if action == "commit":
                        lines = [
                            json.loads(line) for line in body.decode().splitlines() if line.strip()
                        ]
                        hub.commits.append({"repo": repo, "lines": lines})
                        for line in lines:
                            if line["key"] == "file":
                                value = line["value"]
                                hub.repos[repo][value["path"]] = base64.b64decode(value["content"])
                        return self._reply(
                            200,
                            {
                                "commitUrl": f"{hub.url}/{repo}/commit/{'0' * 40}",
                                "commitOid": "0" * 40,
                                "success": True,
                            },
                        )
                return self._reply(404, {"error": f"mock hub: unhandled POST {self.path}"})

            def do_GET(self) -> None:  # noqa: N802
                hub.requests.append(("GET", self.path))
                return self._reply(404, {"error": f"mock hub: unhandled GET {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def validate_card(content: str) -> list[dict[str, str]]:
        """The hub's README check, reduced to what matters here: a YAML mapping with a licence."""
        if not content.startswith("---\n") or content.count("---\n") < 2:
            return [{"message": "README.md has no YAML metadata block"}]
        meta = yaml.safe_load(content.split("---\n")[1])
        if not isinstance(meta, dict) or "license" not in meta:
            return [{"message": "metadata must be a mapping with a license"}]
        return []

    def __enter__(self) -> MockHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
