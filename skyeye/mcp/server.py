"""`python -m skyeye.mcp [--model M]`: an MCP server (the `mcp` SDK, stdio transport).

Tools, all on local raster files (GeoTIFF, JP2, PNG/JPEG, band folders, STAC item JSON):
``describe`` (what the image shows), ``ask`` (any question), ``segment`` (masks as GeoJSON in
EPSG:4326 with their areas), ``change`` (what changed between two dates of one place: the change
mask as GeoJSON, its area and the class transitions, measured) and ``analyze_scene`` (the
whole-scene pipeline over a large scene, writing its outputs to a folder). The model is loaded once, at the first tool call, so an
agent's handshake is immediate. Configure an agent with e.g.
``{"command": "python", "args": ["-m", "skyeye.mcp", "--model", "skyeye-tiny"]}``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyeye.chat.readable import render_readable
from skyeye.chat.reply_geo import reply_extension
from skyeye.chat.session import ChatSession, GenerationSettings
from skyeye.io.policy import DEFAULT_REQUEST_MAX_PIXELS, ReadPolicy
from skyeye.io.raster import check_request_source

logger = logging.getLogger(__name__)


@dataclass
class McpConfig:
    """Settings of the MCP server.

    model: bundled model, folder or hub id; device: torch device; max_new_tokens: answer length.
    allow_files: the only folder whose files the tools read (symbolic links resolved); None:
        any local path. The paths come from an agent, so they are read as request input either
        way (`skyeye.io.policy`): plain raster formats only, no VRT.
    max_pixels: largest width x height an image given to describe/ask/segment may declare.
    """

    model: str = "skyeye-tiny"
    device: str = "cpu"
    max_new_tokens: int = 200
    allow_files: Path | None = None
    max_pixels: int | None = DEFAULT_REQUEST_MAX_PIXELS

    @property
    def policy(self) -> ReadPolicy:
        return ReadPolicy(root=self.allow_files, max_pixels=self.max_pixels)


class SkyEyeTools:
    """The tools' logic, independent of the transport (one model, one answer at a time)."""

    def __init__(self, config: McpConfig, chat: ChatSession | None = None) -> None:
        self.config = config
        self._chat = chat
        self._lock = threading.Lock()

    def _session(self) -> ChatSession:
        if self._chat is None:
            from skyeye.chat.session import load_chat

            settings = GenerationSettings(max_new_tokens=self.config.max_new_tokens)
            self._chat = load_chat(self.config.model, device=self.config.device, settings=settings)
        chat = self._chat
        return ChatSession(chat.model, chat.processor, chat.settings)

    def _ask(self, path: str, question: str, wavelengths: list[float] | None) -> dict[str, Any]:
        source = Path(path).expanduser()
        if not source.exists():
            raise ValueError(f"{source}: no such file or folder (give a local path)")
        with self._lock:
            session = self._session()
            kwargs: dict[str, Any] = {"wavelengths": wavelengths} if wavelengths else {}
            image = session.add_image(source, policy=self.config.policy, **kwargs)
            reply = session.ask(question)
        extension = reply_extension(reply, session.images)
        return {
            # The sentence people read, as the terminal and the server's content; the model's
            # grammar stays in the extension's ``raw``.
            "answer": render_readable(reply.text),
            "image": {
                "path": str(source),
                "bands": image.band_names,
                "size": list(image.source_shape or ()),
                "crs": image.crs.to_string() if image.crs else None,
                "scene_id": image.scene_id,
                "datetime": image.datetime,
            },
            **extension,
        }

    def change(
        self,
        before: str,
        after: str,
        question: str | None = None,
        dates: list[str | None] | None = None,
        wavelengths: list[float] | None = None,
    ) -> dict[str, Any]:
        """What changed from ``before`` to ``after`` (local paths, read as the other tools read):
        dated (``dates``: ISO per image, else the files' own), put on ``before``'s grid and
        answered by measurement (`skyeye.chat.change_answer`). Returns ``answer`` (the
        sentence), ``images``, ``change`` (areas, transitions, the change mask's GeoJSON) and
        the extension fields. Bad input (no overlap, dates backwards, ...) raises ValueError."""
        from skyeye.chat.change_answer import DEFAULT_CHANGE_QUESTION, ask_change
        from skyeye.chat.multi_date import prepare_dated_images
        from skyeye.io.dates import parse_user_date
        from skyeye.io.raster import read_raster

        if dates is not None and len(dates) != 2:
            raise ValueError(f"{len(dates)} dates for 2 images: give [before, after] (or none)")
        try:
            days = [parse_user_date(d) if d else None for d in dates or [None, None]]
        except ValueError:
            raise ValueError(f"dates {dates!r}: write each as YYYY-MM-DD, e.g. 2020-08-31") from None
        sources = [Path(p).expanduser() for p in (before, after)]
        for source in sources:
            if not source.exists():
                raise ValueError(f"{source}: no such file or folder (give a local path)")
        with self._lock:
            session = self._session()
            kwargs: dict[str, Any] = {
                "max_size": session.settings.read_size,
                "sar_wavelength": session.processor.image_processor.sar_wavelength,
                "policy": self.config.policy,
            }
            if wavelengths:
                kwargs["wavelengths"] = wavelengths
            read = [read_raster(source, **kwargs) for source in sources]
            for image in prepare_dated_images(read, days).images:
                session.add_image(image)
            reply = ask_change(session, question or DEFAULT_CHANGE_QUESTION)
        images = [
            {"path": str(source), "datetime": image.datetime, "bands": image.band_names}
            for source, image in zip(sources, session.images, strict=True)
        ]
        return {
            "answer": render_readable(reply.text),
            "images": images,
            **reply_extension(reply, session.images),
        }

    def describe(self, path: str, wavelengths: list[float] | None = None) -> dict[str, Any]:
        return self._ask(path, "Describe this image.", wavelengths)

    def ask(
        self, path: str, question: str, wavelengths: list[float] | None = None
    ) -> dict[str, Any]:
        if not question.strip():
            raise ValueError("the question is empty")
        return self._ask(path, question, wavelengths)

    def segment(
        self, path: str, target: str, wavelengths: list[float] | None = None
    ) -> dict[str, Any]:
        if not target.strip():
            raise ValueError("say what to segment, e.g. 'water' or 'buildings'")
        out = self._ask(path, f"Please segment the {target.strip()}.", wavelengths)
        out["total_area_m2"] = (
            sum(m["area_m2"] for m in out["masks"]) if out["masks_geojson"] else None
        )
        return out

    def analyze_scene(self, path: str, prompt: str, out_dir: str) -> dict[str, Any]:
        from skyeye.scene import SceneConfig, analyze_scene

        # The scene reads its windows itself: every file it will open is checked first, and the
        # outputs stay inside the allowed folder too.
        check_request_source(Path(path).expanduser(), ReadPolicy(root=self.config.allow_files))
        if self.config.allow_files is not None:
            ReadPolicy(root=self.config.allow_files).check_path(Path(out_dir).expanduser())
        with self._lock:
            if self._chat is None:
                self._session()
            config = SceneConfig(progress=False)
            result = analyze_scene(path, prompt, out_dir, config, model=self._chat)
        return scene_summary(result, out_dir)


def scene_summary(result: Any, out_dir: str | Path) -> dict[str, Any]:
    """A JSON-able summary of a `SceneResult`: its answer.json plus the files written."""
    import json

    out = Path(out_dir)
    answer = out / "answer.json"
    summary = json.loads(answer.read_text()) if answer.is_file() else {}
    summary["files"] = sorted(str(p) for p in out.iterdir() if p.is_file())
    return summary


def build_server(tools: SkyEyeTools):
    """The `MCPServer` exposing ``tools`` (describe, ask, segment, change, analyze_scene)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    def checked(call, *args):
        # Bad input reaches the agent as one clear line (an is_error result), not a crash.
        try:
            return call(*args)
        except (ValueError, OSError) as err:
            raise ToolError(str(err)) from None

    server = MCPServer(
        "skyeye",
        instructions="Ask about, describe and segment local satellite/aerial images (GeoTIFF, "
        "JP2, PNG/JPEG, STAC item JSON), and measure what changed between two dates of one "
        "place; masks come back as GeoJSON in EPSG:4326 with areas.",
    )

    @server.tool()
    def describe(path: str, wavelengths: list[float] | None = None) -> dict[str, Any]:
        """Describe a local image. wavelengths: µm per band, only when the file lacks band names."""
        return checked(tools.describe, path, wavelengths)

    @server.tool()
    def ask(path: str, question: str, wavelengths: list[float] | None = None) -> dict[str, Any]:
        """Ask a question about a local image; boxes/masks named in the answer come back too."""
        return checked(tools.ask, path, question, wavelengths)

    @server.tool()
    def segment(path: str, target: str, wavelengths: list[float] | None = None) -> dict[str, Any]:
        """Segment `target` (e.g. 'water') in a local image: GeoJSON (EPSG:4326) and areas in m²."""
        return checked(tools.segment, path, target, wavelengths)

    @server.tool()
    def change(
        before: str,
        after: str,
        question: str | None = None,
        dates: list[str | None] | None = None,
        wavelengths: list[float] | None = None,
    ) -> dict[str, Any]:
        """What changed between two local images of one place (before, after): the change mask
        as GeoJSON (EPSG:4326), its area and the classes gained / lost, measured. question: e.g.
        'Where did water appear?' (default: what changed); dates: [before, after] ISO dates when
        the files carry none."""
        return checked(tools.change, before, after, question, dates, wavelengths)

    @server.tool()
    def analyze_scene(path: str, prompt: str, out_dir: str) -> dict[str, Any]:
        """Run the whole-scene pipeline on a large local scene; outputs go to out_dir."""
        return checked(tools.analyze_scene, path, prompt, out_dir)

    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skyeye.mcp", description=__doc__)
    parser.add_argument(
        "--model", default="skyeye-tiny", help="bundled model, model folder or hub id"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument(
        "--allow-files",
        type=Path,
        default=None,
        help="read images only from under this folder (default: any local path)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_REQUEST_MAX_PIXELS,
        help="largest width x height an image may declare (checked before decoding)",
    )
    args = parser.parse_args(argv)
    # stdout is the protocol: logs go to stderr only.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    from skyeye.logs import configure_logging

    configure_logging(False)
    if args.allow_files is not None and not args.allow_files.is_dir():
        print(f"error: --allow-files {args.allow_files}: not a folder", file=sys.stderr)
        return 2
    config = McpConfig(
        model=args.model,
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        allow_files=args.allow_files,
        max_pixels=args.max_pixels,
    )
    build_server(SkyEyeTools(config)).run("stdio")
    return 0
