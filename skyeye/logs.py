"""Logging set-up shared by the command-line entry points (chat, demo, evaluate)."""

from __future__ import annotations

import logging
import re
import warnings

import transformers


def configure_logging(verbose: bool) -> None:
    """INFO logs with `verbose`; otherwise only SkyEye's own warnings and errors.

    Without `verbose`, the libraries' progress bars, deprecation notices and optional-kernel
    notices (transformers, bitsandbytes) are silenced: a one-shot answer prints only the answer.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    if verbose:
        return
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # GDAL's notes on a file's quirks come back at every read of it (7 copies of one TIFF
    # directory note for one chat answer): each is shown once.
    gdal = logging.getLogger("rasterio._env")
    if not any(isinstance(f, OnceFilter) for f in gdal.filters):  # one, however often called
        gdal.addFilter(OnceFilter())
    silence_library_warnings(verbose)


#: "CPLE_AppDefined in 1985.tif: " / "CPLE_AppDefined in ": what differs between copies of a note.
_GDAL_PREFIX = re.compile(r"^CPLE_\w+ in (\S+: )?")


class OnceFilter(logging.Filter):
    """Let each distinct message through once (the file name left out: one note per quirk)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = _GDAL_PREFIX.sub("", record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def silence_library_warnings(verbose: bool) -> None:
    """Hide the libraries' deprecation notices unless `verbose` (call again after imports that
    install warning filters of their own)."""
    if verbose:
        return
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
