"""What a reader may open: the user's own files, or bytes and paths that came from a request.

A path the user types on their own command line is trusted: every GDAL driver, any file. Bytes
from outside (a server request body, a demo upload, an MCP tool call) are not: GDAL would happily
open a VRT that reads other files (``VRTRawRasterBand`` over ``/proc/self/cmdline``) or fetches
URLs (``/vsicurl/``) on the server's behalf. A `ReadPolicy` is what the readers of `skyeye.io`
apply to such input:

- the format is recognised from the file's first bytes, and only plain rasters are opened (TIFF
  — GeoTIFF and COG —, PNG, JPEG, JPEG 2000, WebP), each with its one GDAL driver or PIL plugin:
  a VRT or any other XML/proxy format is refused (`UntrustedFormatError`);
- GDAL opens them without sibling files (no ``.ovr``/``.msk``/``.aux.xml`` next to them) and
  without network access;
- every file actually opened (band-folder members, STAC hrefs) must resolve, after symbolic
  links, inside ``root`` when one is set (`OutsideRootError`, whose message never names where
  the path leads);
- the size the header declares (width x height, and bands x bytes per sample) is checked against
  ``max_pixels`` before anything is decoded (`PixelLimitError`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from skyeye.errors import OutsideRootError, PixelLimitError, UntrustedFormatError
from skyeye.io.image import check_file

Kind = Literal["tiff", "png", "jpeg", "jp2", "webp"]

#: First bytes -> format. TIFF and BigTIFF in both byte orders; JPEG 2000 as a JP2 box file or
#: a bare codestream.
_MAGIC: tuple[tuple[bytes, Kind], ...] = (
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jp2"),
    (b"\xff\x4f\xff\x51", "jp2"),
)
#: The one GDAL driver each format is opened with (`rasterio.open(..., driver=...)`).
GDAL_DRIVERS: dict[str, str] = {
    "tiff": "GTiff",
    "png": "PNG",
    "jpeg": "JPEG",
    "jp2": "JP2OpenJPEG",
}
#: The one PIL plugin each photo format is opened with (`Image.open(..., formats=...)`).
PIL_FORMATS: dict[str, str] = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
#: GDAL settings of every untrusted open: no sibling files (an ``.ovr`` next to an upload could
#: be a link elsewhere), no ``.aux.xml`` side metadata, and /vsicurl/ refusing every URL (its
#: allowed-extension list names a suffix no URL has) as a second lock behind the driver list.
UNTRUSTED_GDAL_ENV: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".skyeye-no-network",
    "GDAL_HTTP_TIMEOUT": "1",
}
#: Default of ``--max-pixels`` for request input: 50 megapixels (about 7000 x 7000). A 9000²
#: PNG (81 MP) is decoded whole by PIL and took a server from 2.9 to 6.6 GB; a larger source
#: (a full Sentinel-2 tile through ``file://``) needs the flag raised on purpose.
DEFAULT_REQUEST_MAX_PIXELS = 50_000_000
#: Decoded bytes allowed per pixel of the limit: bands x bytes per sample (16 uint16 bands).
BYTES_PER_PIXEL = 32


@dataclass(frozen=True)
class ReadPolicy:
    """How the readers treat input that came from a request.

    root: every file opened must resolve (after symbolic links) inside this folder; None allows
        any path (bytes a request sent, written by the caller to a temporary file).
    max_pixels: largest width x height a header may declare; decoded bytes are limited to
        ``max_pixels * BYTES_PER_PIXEL``. None: no limit.
    """

    root: Path | None = None
    max_pixels: int | None = DEFAULT_REQUEST_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive number, got {self.max_pixels}")
        if self.root is not None:
            object.__setattr__(self, "root", Path(self.root).resolve())

    def check_path(self, path: str | os.PathLike[str], label: str | None = None) -> Path:
        """The path resolved (symbolic links followed); `OutsideRootError` outside ``root``."""
        raw = os.fspath(path)
        shown = label or raw
        if raw.startswith("/vsi") or "://" in raw:
            raise OutsideRootError(f"{shown}: only plain local files may be read here")
        resolved = Path(raw).resolve()
        if self.root is not None and not resolved.is_relative_to(self.root):
            # Never say where the path leads: that would map the server's disk for the caller.
            raise OutsideRootError(
                f"{shown}: leads outside the folder this server may read; put the file (not a "
                "link to it) under that folder"
            )
        return resolved

    def check_size(self, width: int, height: int, bands: int, itemsize: int, label: str) -> None:
        """Raise `PixelLimitError` when the declared size is over the limit (nothing decoded)."""
        if self.max_pixels is None:
            return
        pixels = int(width) * int(height)
        if pixels > self.max_pixels:
            raise PixelLimitError(
                f"{label}: {width} x {height} px ({pixels / 1e6:.1f} MP) is over this service's "
                f"limit of {self.max_pixels / 1e6:.1f} MP (--max-pixels): send a smaller or "
                "downsampled image",
                pixels=pixels,
                limit=self.max_pixels,
            )
        decoded = pixels * int(bands) * int(itemsize)
        if decoded > self.max_pixels * BYTES_PER_PIXEL:
            raise PixelLimitError(
                f"{label}: {width} x {height} px x {bands} bands x {itemsize} bytes "
                f"({decoded / 2**20:.0f} MiB decoded) is over this service's limit of "
                f"{self.max_pixels * BYTES_PER_PIXEL / 2**20:.0f} MiB (--max-pixels): send fewer "
                "bands or a smaller image",
                pixels=pixels,
                limit=self.max_pixels,
            )


def sniff_format(path: Path, label: str) -> Kind:
    """The format of a file from its first bytes; `UntrustedFormatError` for anything else."""
    with open(path, "rb") as f:
        head = f.read(16)
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    accepted = "GeoTIFF, PNG, JPEG, JPEG 2000 or WebP"
    if head.lstrip().startswith(b"<"):
        raise UntrustedFormatError(
            f"{label}: an XML document (a GDAL VRT?) is refused here: it can point at other "
            f"files and URLs; send the pixels themselves as {accepted} "
            "(e.g. gdal_translate -of GTiff in.vrt out.tif)"
        )
    raise UntrustedFormatError(
        f"{label}: not a readable raster: its first bytes are none of {accepted}; send one of "
        "those (corrupt or truncated files are refused too)"
    )


def open_target(path: Path, policy: ReadPolicy | None) -> tuple[Path, str | None, str | None]:
    """(file to open, PIL format, GDAL driver) of one raster file: for the user's own files
    (no policy) PIL or GDAL choose; a request's file gets exactly one of each or is refused."""
    if policy is None:
        return check_file(Path(path)), None, None
    resolved = check_file(policy.check_path(path))
    kind = sniff_format(resolved, str(path))
    return resolved, PIL_FORMATS.get(kind), GDAL_DRIVERS.get(kind)
