"""Image parts of a chat request -> `RasterImage`: data URLs (PNG, JPEG, GeoTIFF) and `file://`.

An ``image_url`` part may carry an extension object ``"skyeye": {"wavelengths": [...],
"band_names": [...], "sensor": "...", "date": "2020-08-31"}`` describing its bands and its
acquisition date; without it the file's own band names and date are used, as in the chat. ``file://`` URLs are read only under the server's
``--allow-files`` root (a STAC item JSON there works too).

Everything a request names is read under a `skyeye.io.policy.ReadPolicy`: plain rasters only
(a GDAL VRT is refused: it could read other files or fetch URLs for the caller), every file
opened inside the root after symbolic links, and the size the header declares checked against
``--max-pixels`` before decoding (413).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from skyeye.errors import (
    OutsideRootError,
    PixelLimitError,
    RasterReadError,
    ServeRequestError,
    UntrustedFormatError,
)
from skyeye.io.dates import parse_user_date
from skyeye.io.policy import DEFAULT_REQUEST_MAX_PIXELS, ReadPolicy
from skyeye.io.raster import RasterImage, read_raster
from skyeye.serve.params import short_repr

#: MIME type of a data URL -> file suffix the raster reader dispatches on.
MIME_SUFFIX = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/tiff": ".tif",
    "image/tif": ".tif",
    "image/geotiff": ".tif",
    "image/webp": ".webp",
}
# The header of a data URL (what precedes its first comma; the payload is never matched by a
# regular expression, nor copied more than once: it is megabytes of base64).
_DATA_HEADER = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*)$")
#: Longest data URL header read before its comma.
_MAX_HEADER = 256
_BAND_KEYS = ("wavelengths", "band_names", "sensor")
#: The extension's keys: the band keys and the image's acquisition date (ISO, `part_date`).
_KEYS = (*_BAND_KEYS, "date")


def band_options(part: dict[str, Any], label: str) -> dict[str, Any]:
    """The ``skyeye`` extension of an image part as `read_raster` keyword arguments."""
    ext = part.get("skyeye") or {}
    if not isinstance(ext, dict):
        raise ServeRequestError(f"{label}: 'skyeye' must be an object", param="messages")
    unknown = sorted(set(ext) - set(_KEYS))
    if unknown:
        raise ServeRequestError(
            f"{label}: unknown 'skyeye' field(s) {unknown}; allowed: {list(_KEYS)}",
            param="messages",
        )
    wavelengths = ext.get("wavelengths")
    if wavelengths is not None and (
        not isinstance(wavelengths, list)
        or not wavelengths
        or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in wavelengths)
    ):
        raise ServeRequestError(
            f"{label}: 'skyeye.wavelengths' must be a list of numbers in µm, one per band",
            param="messages",
        )
    names = ext.get("band_names")
    if names is not None and (
        not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names)
    ):
        raise ServeRequestError(
            f"{label}: 'skyeye.band_names' must be a list of strings, one per band",
            param="messages",
        )
    sensor = ext.get("sensor")
    if sensor is not None and not isinstance(sensor, str):
        raise ServeRequestError(
            f"{label}: 'skyeye.sensor' must be a sensor name such as 'sentinel-2'",
            param="messages",
        )
    return {k: ext[k] for k in _BAND_KEYS if ext.get(k) is not None}


def part_date(part: dict[str, Any], label: str) -> str | None:
    """The ``skyeye.date`` of an image part as ISO text (it overrides the file's own date), or
    None; not a date -> 400."""
    ext = part.get("skyeye")
    value = ext.get("date") if isinstance(ext, dict) else None
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        return parse_user_date(value)
    except ValueError:
        raise ServeRequestError(
            f"{label}: 'skyeye.date' {short_repr(value)} is not an ISO date: write it as "
            "YYYY-MM-DD, e.g. 2020-08-31",
            param="messages",
        ) from None


def _decode_data_url(url: str, label: str) -> tuple[bytes, str]:
    comma = url.find(",", 0, _MAX_HEADER)
    match = _DATA_HEADER.match(url, 0, comma) if comma >= 0 else None
    if match is None or ";base64" not in (match.group("params") or ""):
        raise ServeRequestError(
            f"{label}: the data URL is malformed; send data:<mime>;base64,<bytes>", param="messages"
        )
    mime = (match.group("mime") or "").lower()
    if mime not in MIME_SUFFIX:
        raise ServeRequestError(
            f"{label}: unsupported image type {mime or '(none)'!r}; send image/png, image/jpeg or "
            "image/tiff (GeoTIFF, any band count)",
            param="messages",
        )
    try:
        # Strict: only the base64 alphabet and correct padding (what b64decode(validate=True)
        # accepts), decoded straight from the str, without its ASCII copy or a regex pass.
        data = binascii.a2b_base64(url[comma + 1 :], strict_mode=True)  # type: ignore[call-arg]
    except (binascii.Error, ValueError):
        raise ServeRequestError(
            f"{label}: the image data is not valid base64", param="messages"
        ) from None
    if not data:
        raise ServeRequestError(f"{label}: the image is empty (0 bytes)", param="messages")
    return data, MIME_SUFFIX[mime]


def image_digest(content: bytes | str, options: dict[str, Any], max_size: int) -> str:
    """The identity of a request image for the server's image-prefix cache: its bytes (or, for a
    file, its resolved path, size and modification time), band options and read size."""
    h = hashlib.blake2b(content if isinstance(content, bytes) else content.encode(), digest_size=20)
    h.update(json.dumps([options, max_size], sort_keys=True).encode())
    return h.hexdigest()


def _file_identity(path: Path) -> str:
    stat = path.stat()
    return f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}"


def _allowed_file(url: str, policy: ReadPolicy, label: str) -> Path:
    if policy.root is None:
        raise ServeRequestError(
            f"{label}: file:// images are disabled on this server; send the image as a data URL "
            "(or start the server with --allow-files DIR)",
            param="messages",
        )
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise ServeRequestError(f"{label}: file:// URLs must be local paths", param="messages")
    return policy.check_path(unquote(parsed.path), label)


def _read(path: Path | str, label: str, policy: ReadPolicy, kwargs: dict[str, Any]) -> RasterImage:
    """`read_raster` under the request policy; its errors as 4xx naming ``label``, never a path
    of the server's disk (the temporary file, the allowed root)."""

    def hide(err: Exception) -> str:
        text = str(err).replace(str(path), label)
        return text.replace(str(policy.root), "the allowed folder") if policy.root else text

    try:
        return read_raster(path, policy=policy, **kwargs)
    except OutsideRootError as err:
        raise ServeRequestError(
            hide(err), status=403, kind="permission_error", param="messages"
        ) from None
    except PixelLimitError as err:
        raise ServeRequestError(
            hide(err), status=413, code="image_too_large", param="messages"
        ) from None
    except UntrustedFormatError as err:
        raise ServeRequestError(
            hide(err), code="unsupported_image_format", param="messages"
        ) from None
    except RasterReadError as err:
        raise ServeRequestError(hide(err), param="messages") from None


def read_image_part(
    part: dict[str, Any],
    label: str,
    *,
    allow_files: Path | None,
    max_size: int,
    sar_wavelength: float | None,
    max_pixels: int | None = DEFAULT_REQUEST_MAX_PIXELS,
) -> tuple[RasterImage, str]:
    """One ``image_url`` part -> (`RasterImage` read at ``max_size``, its `image_digest`); bad
    input -> 4xx error (403 outside ``allow_files``, 413 over ``max_pixels``)."""
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise ServeRequestError(f"{label}: 'image_url.url' is missing", param="messages")
    options = band_options(part, label)
    kwargs = {"max_size": max_size, "sar_wavelength": sar_wavelength, **options}
    if url.startswith("data:"):
        data, suffix = _decode_data_url(url, label)
        digest = image_digest(data, options, max_size)
        with tempfile.TemporaryDirectory(prefix="skyeye-serve-") as tmp:
            path = Path(tmp) / f"image{suffix}"
            path.write_bytes(data)
            del data  # the decoded bytes are on disk now; the reader opens them there
            image = _read(path, label, ReadPolicy(root=Path(tmp), max_pixels=max_pixels), kwargs)
        image.path = label
        return image, digest
    if url.startswith("file://"):
        policy = ReadPolicy(root=allow_files, max_pixels=max_pixels)
        try:
            path = _allowed_file(url, policy, label)
        except OutsideRootError as err:
            raise ServeRequestError(
                str(err), status=403, kind="permission_error", param="messages"
            ) from None
        image = _read(path, label, policy, kwargs)
        return image, image_digest(_file_identity(path), options, max_size)
    scheme = urlparse(url).scheme or "(none)"
    raise ServeRequestError(
        f"{label}: {scheme} image URLs are not fetched by this server; send the image as a "
        "data URL (data:image/tiff;base64,...)",
        param="messages",
    )
