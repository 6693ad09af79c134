"""Every exception a SkyEye user may catch, in one place (as torchgeo does).

Each message names the file or value at fault and the fix. Most derive from `ValueError` (bad
input) so callers that already catch `ValueError` keep working.
"""

from __future__ import annotations

from collections.abc import Iterable


class SkyEyeError(Exception):
    """Base class of SkyEye's own errors."""


class RasterReadError(SkyEyeError, ValueError):
    """A raster could not be read; the message names the file, the problem and the fix."""


class PromptTooLongError(SkyEyeError, ValueError):
    """The tokenised conversation does not fit the LLM's context window."""


class LLMNotFoundError(SkyEyeError, RuntimeError):
    """The requested LLM cannot be found locally."""


class HubError(SkyEyeError, ValueError):
    """A model folder, report or recipe cannot be turned into a card or pushed."""


class RecordError(SkyEyeError, ValueError):
    """A data record cannot be used (for training or evaluation); it is skipped and counted.

    Args:
        reason: what is wrong; evaluation uses a short category here ("missing image") so the
            report can count records by reason, training a full sentence.
        detail: more about this record's case (optional).
        record_id: the record's id (or ``FILE:LINE`` when the id is unreadable), when known.
    """

    def __init__(self, reason: str, detail: str = "", *, record_id: str | None = None) -> None:
        message = f"{reason}: {detail}" if detail else reason
        super().__init__(f"record {record_id}: {message}" if record_id is not None else message)
        self.reason = reason
        self.detail = detail
        self.record_id = record_id


class SkipRecord(SkyEyeError):
    """Raised by an instruction-data converter for a record it cannot turn into a valid
    conversation; ``reason`` is the category the conversion report counts."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BoxParseError(SkyEyeError, ValueError):
    """A box-like token in text is not a valid ``{<x1><y1><x2><y2>}`` box."""


class SpecError(SkyEyeError, ValueError):
    """A from-rasters spec is malformed; the message names the key and the fix."""


class MissingBandError(SkyEyeError, ValueError):
    """The image lacks a band a spectral index needs."""


class ConfigError(SkyEyeError, ValueError):
    """A training recipe asks for something impossible; the message names the fix."""


class CheckpointError(SkyEyeError, ValueError):
    """A training checkpoint folder is incomplete or its files do not match its manifest."""


class BandTableError(SkyEyeError, ValueError):
    """A band table or sensor choice does not fit the image; the message says what to change."""


class DemoError(SkyEyeError, ValueError):
    """A problem shown to a demo user (bad file, bad band table, too many images)."""


def _preview(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


class CheckpointKeyError(SkyEyeError, ValueError):
    """A checkpoint's keys do not match the model it is loaded into."""

    def __init__(
        self,
        source: str,
        missing: Iterable[str],
        unexpected: Iterable[str],
        hint: str = "Check that the config (family, depth, pool, final_norm, num_classes) follows "
        "the checkpoint.",
    ) -> None:
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {_preview(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {_preview(self.unexpected)}")
        super().__init__(
            f"checkpoint {source} does not match the model: {'; '.join(parts)}. {hint}"
        )


class DiskFullError(SkyEyeError, OSError):
    """The disk filled while writing; the message names the folder and the free space."""


class ModelFolderError(SkyEyeError, ValueError):
    """A model folder is incomplete or damaged; the message names the file and the fix."""


class StacError(RasterReadError):
    """A STAC item cannot be turned into a raster: bad JSON, no usable asset, a remote href."""


class ServeRequestError(SkyEyeError, ValueError):
    """A request to `skyeye.serve` is invalid; `status` is its HTTP status (400, 401, 404, 413, 429).

    `kind` is the OpenAI error type (``invalid_request_error``, ``authentication_error``...),
    `code` an optional machine-readable code and `param` the request field at fault.
    """

    def __init__(
        self,
        message: str,
        status: int = 400,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.code, self.param = status, kind, code, param


class SceneError(SkyEyeError, ValueError):
    """A whole-scene analysis cannot run: bad bbox, window, gsd or an output folder that holds
    another scene's partial run; the message names the value at fault and the fix."""


class SceneCancelled(SkyEyeError):
    """A whole-scene analysis stopped by its caller (the demo's reader went away); the windows
    finished so far stay in the output folder, so the same run resumes from them."""


class UnsafePathError(SkyEyeError, ValueError):
    """A path from a data file points outside its root (absolute, or climbing out with `..`)."""


class ImagePathError(SkyEyeError, ValueError):
    """A path from a data file names no readable image (missing, a FIFO/device, an empty folder)."""


class DataFileError(SkyEyeError, ValueError):
    """A data file cannot be read (at all, or past a point); the message names the file and the
    byte offset or line where reading stopped, and the fix."""


class UntrustedFormatError(RasterReadError):
    """Bytes from outside (an upload, a request body) are not a plain raster this reader opens for
    strangers (GeoTIFF, PNG, JPEG, JPEG 2000): a GDAL VRT or any other XML/proxy format that
    could make GDAL read other files or fetch URLs is refused."""


class PixelLimitError(RasterReadError):
    """A raster declares more pixels (width x height) or more decoded bytes than the entry point's
    ``--max-pixels`` allows; checked from the header, before any decoding."""

    def __init__(self, message: str, *, pixels: int, limit: int) -> None:
        super().__init__(message)
        self.pixels, self.limit = pixels, limit


class OutsideRootError(UnsafePathError):
    """A file a request names (directly, as a band-folder member or as a STAC href) resolves,
    after symbolic links, outside the folder the server may read (``--allow-files``)."""


class RunLockedError(SkyEyeError, RuntimeError):
    """Another run holds the lock on this output folder (``--out``); the message names it."""


class NoImageError(SkyEyeError, ValueError):
    """A question was asked in a conversation that holds no image: SkyEye answers only from an
    image, so it refuses rather than invent one; the message says how to add an image."""


class GenerationCancelled(SkyEyeError):
    """The caller of `ChatSession.stream`/`ask` set its cancel event (e.g. the HTTP client went
    away): generation stopped at the next token and the question was dropped."""


class OptionsError(SkyEyeError, ValueError):
    """A multiple-choice question whose options cannot be answered (a single option, an option
    without text, more than 26); the message is a plain sentence saying what to fix."""


class JobError(SkyEyeError, ValueError):
    """A server job cannot go on: its state on disk is unreadable or no longer the job that was
    submitted, or it passed the jobs' disk limit; the message says what to do (submit again)."""


class AlignmentError(RasterReadError):
    """Images of one question cannot be put on one grid (no georeference and different sizes);
    the message names both images and the fix."""


class NoOverlapError(AlignmentError):
    """Two images of one question cover no common valid pixel on the first image's grid; the
    message names both images."""


class NoComparableAreaError(SkyEyeError, ValueError):
    """A change question whose images share no pixel with data and without cloud on both dates
    (one date all cloud or no data over the overlap); the message says which and the fix."""


class ServerClosedError(SkyEyeError, RuntimeError):
    """The API server's batcher stopped (the server is shutting down) while an answer was
    waiting for it or being generated; the answer is lost, the client may retry elsewhere."""
