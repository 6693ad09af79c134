"""One browser session of the demo: its uploaded images, band edits, chat and result files.

`DemoSession` is plain Python (no Gradio), so the UI logic is tested without a browser. The
model and processor are shared by every session of a process; each session owns its
`ChatSession`, so two users never see each other's images or history.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from demo.bands import BandTableError, apply_rows, apply_sensor, band_rows
from demo.pair import PairSlots, prepare_pair
from demo.scene import stream_scene
from demo.uploads import UPLOAD_EXTENSIONS as UPLOAD_EXTENSIONS
from demo.uploads import read_upload
from demo.workspace import keep_upload
from skyeye.chat.readable import readable_stream
from skyeye.chat.session import ChatReply, ChatSession, GenerationSettings
from skyeye.errors import DemoError
from skyeye.grounding.geo import boxes_to_geojson, masks_to_geojson, write_mask_geotiff
from skyeye.io.dates import date_label
from skyeye.io.policy import DEFAULT_REQUEST_MAX_PIXELS
from skyeye.io.raster import RasterImage
from skyeye.render.overlay import draw_overlay
from skyeye.render.previews import preview_modes, render_preview
from skyeye.scene.pipeline import SceneResult
from skyeye.scenechat.follow import SceneOptions, scene_folder, scene_image_index

logger = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Limits and decoding settings shared by every session.

    max_upload_mb: largest accepted file. max_total_upload_mb: all the files of one
    conversation together. max_images: images per conversation.
    read_size: longest side at which images are read (bounds memory; overlays are drawn on it).
    max_new_tokens: longest answer. work_root: folder under which each session keeps its result
    files (the app's own temporary folder, removed at shutdown; None: the system's temp folder).
    scene: re-ask a mask or amount answer about a georeferenced image larger than
    `scene_options.window` of the whole scene at its own resolution (the UI switch's default).
    max_pixels: largest width x height an upload may declare, checked from its header before
        decoding; uploads are read as request input (`skyeye.io.policy`: no VRT, plain rasters).
    """

    max_upload_mb: float = 200.0
    max_total_upload_mb: float = 1000.0
    max_images: int = 8
    read_size: int = 512
    max_new_tokens: int = 200
    work_root: Path | None = None
    scene: bool = True
    scene_options: SceneOptions = field(default_factory=SceneOptions)
    max_pixels: int = DEFAULT_REQUEST_MAX_PIXELS


@dataclass
class ImageEntry:
    """An uploaded image: display name, the raster, whether a finished turn has used it, and
    the file kept for a whole-scene analysis (None: the image is not larger than the window)."""

    name: str
    image: RasterImage
    sent: bool = False
    preview_mode: str | None = None
    source: Path | None = None


@dataclass
class TurnResult:
    """What the last answer pointed at, for drawing and download."""

    reply: ChatReply
    image_index: int | None
    overlay: np.ndarray | None = None
    files: list[Path] = field(default_factory=list)
    note: str = ""
    scene: SceneResult | None = None


class DemoSession:
    """State and actions of one user's conversation."""

    def __init__(self, model: Any, processor: Any, config: DemoConfig | None = None) -> None:
        self.config = config or DemoConfig()
        self.processor = processor
        self.chat = ChatSession(
            model,
            processor,
            GenerationSettings(
                max_new_tokens=self.config.max_new_tokens, read_size=self.config.read_size
            ),
        )
        self.entries: list[ImageEntry] = []
        self.pair = PairSlots()  # the before/after slots (demo.pair)
        self.result: TurnResult | None = None
        self.workdir = self._new_workdir()
        self.upload_bytes = 0  # accepted files of this conversation, against max_total_upload_mb
        self._turn = 0

    def _new_workdir(self) -> Path:
        root = self.config.work_root
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="skyeye-demo-session-", dir=root))

    # ------------------------------------------------------------------ images
    @property
    def sar_wavelength(self) -> float | None:
        return self.processor.image_processor.sar_wavelength

    def add_file(self, path: str | Path, name: str | None = None) -> int:
        """Read an uploaded file; returns its index. Raises `DemoError` with a readable reason."""
        path = Path(path)
        name = name or path.name
        image, size = read_upload(
            self.config,
            path,
            name,
            n_images=len(self.entries),
            upload_bytes=self.upload_bytes,
            sar_wavelength=self.sar_wavelength,
        )
        self.upload_bytes += size
        source = None
        if image.crs is not None and max(image.source_shape or (0, 0)) > self.scene_window:
            source = keep_upload(path, self.workdir / "sources")  # read again, window by window
        self.entries.append(ImageEntry(name=name, image=image, source=source))
        logger.info("session: added %s (%d bands %s)", name, image.data.shape[0], image.band_names)
        return len(self.entries) - 1

    @property
    def scene_window(self) -> int:
        return self.config.scene_options.window

    def entry(self, index: int) -> ImageEntry:
        if not 0 <= index < len(self.entries):
            raise DemoError("no image selected: upload an image or pick an example first")
        return self.entries[index]

    def rows(self, index: int) -> list[list[Any]]:
        return band_rows(self.entry(index).image)

    def _replace_image(self, index: int, new: RasterImage) -> None:
        entry = self.entry(index)
        if entry.sent:
            raise DemoError(
                f"{entry.name} was already sent to the model; press 'New conversation' to change "
                "its bands"
            )
        try:  # the same check ChatSession.add_image makes, now rather than at the question
            self.processor.image_processor([new])
            if any(img is entry.image for img in self.chat.pending_images):
                # attached to a question that failed or was abandoned: swap it there too
                self.chat.replace_image(entry.image, new)
        except ValueError as err:
            raise DemoError(f"{entry.name}: {err}") from None
        entry.image = new
        entry.preview_mode = None

    def set_bands(self, index: int, rows: Sequence[Sequence[Any]], sensor: str | None) -> None:
        """Apply an edited band table (names, wavelengths) and sensor to image `index`."""
        try:
            new = apply_rows(
                self.entry(index).image, rows, sensor, sar_wavelength=self.sar_wavelength
            )
        except BandTableError as err:
            raise DemoError(str(err)) from None
        self._replace_image(index, new)

    def set_sensor(self, index: int, sensor: str) -> None:
        """Label image `index` with a sensor's band names and wavelengths."""
        try:
            new = apply_sensor(self.entry(index).image, sensor, sar_wavelength=self.sar_wavelength)
        except BandTableError as err:
            raise DemoError(str(err)) from None
        self._replace_image(index, new)

    def preview(self, index: int, mode: str | None = None) -> np.ndarray:
        """(H, W, 3) uint8 preview of image `index` in `mode` (remembered per image)."""
        entry = self.entry(index)
        modes = preview_modes(entry.image)
        mode = (
            mode if mode in modes else entry.preview_mode if entry.preview_mode in modes else None
        )
        entry.preview_mode = mode or modes[0]
        try:
            return render_preview(entry.image, entry.preview_mode)
        except ValueError as err:
            raise DemoError(f"{entry.name}: {err}") from None

    # -------------------------------------------------------------------- chat
    def stream(
        self,
        prompt: str,
        scene: bool | None = None,
        dates: Sequence[str | None] | None = None,
        change: bool = False,
    ) -> Iterator[str]:
        """Ask `prompt` about the images; yields the answer as it grows (accumulated text).

        scene (None: the config's): when the answer draws a mask or states an amount about a
        georeferenced image larger than the scene window, ask the whole scene too, streaming its
        progress; its answer follows the chat's and its files are the downloads.
        dates: the before/after date fields; a pending pair is dated and aligned first
        (`demo.pair.prepare_pair`). change: the question compares the pair ("What changed?").
        """
        if not prompt or not prompt.strip():
            raise DemoError("type a question first")
        for entry in self.entries:
            if not entry.sent:
                self._check_readable(entry)
        pair_note = prepare_pair(self, dates, required=change)
        try:
            for entry in self.entries:
                if not entry.sent and not any(img is entry.image for img in self.chat.images):
                    self.chat.add_image(entry.image)
            text = ""
            # closing(): when our reader goes away (closed tab), the session's stream is closed
            # now, which stops generation and drops the unanswered question.
            # Sentences, not the model's grammar (the conversation keeps that).
            with closing(readable_stream(self.chat, prompt.strip())) as pieces:
                for piece in pieces:
                    text += piece
                    yield text
        except ValueError as err:
            raise DemoError(str(err)) from None
        for entry in self.entries:
            entry.sent = entry.sent or any(img is entry.image for img in self.chat.images)
        self._turn += 1
        assert self.chat.last_reply is not None
        self.result = self._finish(self.chat.last_reply)
        if pair_note:
            self.result.note = f"{pair_note} {self.result.note}"
        if self.config.scene if scene is None else scene:
            yield from self._scene(prompt.strip(), text)

    def _scene(self, prompt: str, text: str) -> Iterator[str]:
        """The whole-scene follow-up of the last answer, if it has one (see `stream`)."""
        assert self.result is not None
        index = scene_image_index(self.result.reply, self.chat.images, self.scene_window)
        image = None if index is None else self.chat.images[index]
        entry = next((e for e in self.entries if e.image is image), None)
        if entry is None or entry.source is None:
            return
        options = self.config.scene_options
        out = scene_folder(self.workdir / "scenes", entry.source, prompt, options)
        turn = yield from stream_scene(
            self.chat, entry.image, entry.source, entry.name, prompt, text, out, options
        )
        if turn.result is None:
            self.result.note = turn.note
            return
        self.result = replace(
            self.result,
            image_index=self.entries.index(entry),
            overlay=turn.overlay,
            files=turn.files,
            note=turn.note,
            scene=turn.result,
        )

    def _check_readable(self, entry: ImageEntry) -> None:
        """Raise `DemoError` saying how to fix an image the model cannot take (no wavelengths)."""
        try:
            self.processor.image_processor([entry.image])
        except ValueError as err:
            if entry.image.wavelengths is None and not entry.image.sensor:
                raise DemoError(
                    f"{entry.name}: the model needs each band's wavelength, and the bands "
                    f"{entry.image.band_names} have none. Pick a sensor (e.g. sentinel-2) "
                    "under 'Bands', or type each band's wavelength in µm in the band table and "
                    "press 'Apply table'; then ask again."
                ) from None
            reason = str(err).removeprefix(f"{entry.name}: ")
            raise DemoError(
                f"{entry.name}: {reason}. Fix the bands under 'Bands' (a sensor or the "
                "wavelengths in the table), then ask again."
            ) from None

    def _target_image(self, reply: ChatReply) -> int | None:
        """Index of the entry an answer's boxes/masks refer to: the image of its first mask (the
        model says which image each mask lies on), else the latest image sent."""
        if reply.mask_images:
            image = self.chat.images[reply.mask_images[0]]
            for k, entry in enumerate(self.entries):
                if entry.image is image:
                    return k
        for k in range(len(self.entries) - 1, -1, -1):
            if self.entries[k].sent:
                return k
        return None

    def _finish(self, reply: ChatReply) -> TurnResult:
        index = self._target_image(reply)
        result = TurnResult(reply=reply, image_index=index)
        if index is None:
            result.note = "No image in the conversation: nothing to draw."
            return result
        entry = self.entries[index]
        result.overlay = draw_overlay(
            self.preview(index), reply.boxes, reply.masks, reply.mask_phrases
        )
        found = f"{len(reply.boxes)} box(es), {len(reply.masks)} mask(s) on {entry.name}"
        if not reply.boxes and not reply.masks:
            result.note = f"The answer names no box or mask; showing {entry.name}."
        elif entry.image.crs is None or entry.image.transform is None:
            result.note = f"{found}. The image is not georeferenced, so there is no GeoJSON."
        else:
            result.files = self._write_results(entry.image, reply)
            result.note = f"{found}; download them as GeoJSON / GeoTIFF below."
        return result

    def _write_results(self, image: RasterImage, reply: ChatReply) -> list[Path]:
        out = self.workdir / f"answer_{self._turn}"
        out.mkdir(parents=True, exist_ok=True)
        files: list[Path] = []
        shape = tuple(image.data.shape[1:])
        if reply.boxes:
            fc = boxes_to_geojson(
                reply.boxes, transform=image.transform, crs=image.crs, image_shape=shape
            )
            files.append(out / "boxes.geojson")
            files[-1].write_text(json.dumps(fc, indent=1))
        masks = [m for m in reply.masks if tuple(m.shape) == shape]
        if masks:
            phrases = [
                p
                for m, p in zip(reply.masks, reply.mask_phrases, strict=False)
                if tuple(m.shape) == shape
            ]
            fc = masks_to_geojson(
                np.stack(masks), phrases, transform=image.transform, crs=image.crs
            )
            files.append(out / "masks.geojson")
            files[-1].write_text(json.dumps(fc, indent=1))
            for k, mask in enumerate(masks):
                files.append(out / f"mask_{k + 1}.tif")
                write_mask_geotiff(files[-1], mask, transform=image.transform, crs=image.crs)
        return files

    # ------------------------------------------------------------------- reset
    def reset(self) -> None:
        """Forget images, history and result files."""
        self.chat.reset()
        self.entries.clear()
        self.pair = PairSlots()
        self.result = None
        self.upload_bytes = 0
        self.close()
        self.workdir = self._new_workdir()

    def close(self) -> None:
        """Delete the session's result files (called when the browser session ends)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def summary(self, index: int) -> str:
        """One line about image `index`: bands, sensor, grid, georeference, value scaling."""
        entry = self.entry(index)
        img = entry.image
        h, w = img.data.shape[1:]
        sh, sw = img.source_shape or (h, w)
        grid = f"{w}×{h} px" + (f" (read from {sw}×{sh})" if (sh, sw) != (h, w) else "")
        geo = f"CRS {img.crs.to_string()}" if img.crs is not None else "not georeferenced"
        if img.datetime is not None:
            geo += f", dated {date_label(img.datetime)}"
        ip = self.processor.image_processor
        scaling = ip.scaling_for(img.sensor, img.data)
        state = "sent to the model" if entry.sent else "sent with your next question"
        return (
            f"**{entry.name}**: {img.data.shape[0]} bands, sensor {img.sensor or 'unknown'}, "
            f"{grid}, {geo}, value scaling `{scaling}`; {state}."
        )
