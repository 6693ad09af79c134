"""Reading one upload of the demo: the checks every upload field shares (type, size, the
conversation's limits), then the raster as request input, errors naming the user's file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from skyeye.errors import DemoError
from skyeye.io.policy import ReadPolicy
from skyeye.io.raster import RasterImage, RasterReadError, read_raster

if TYPE_CHECKING:
    from demo.session import DemoConfig

#: What the upload accepts (GDAL reads GeoTIFF and JPEG 2000, PIL the photos).
UPLOAD_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".jp2")


def _display_message(err: Exception, path: Path, name: str) -> str:
    # Uploads live under a random temporary folder: show the user's file name instead.
    return str(err).replace(str(path), name)


def read_upload(
    config: DemoConfig,
    path: Path,
    name: str,
    *,
    n_images: int,
    upload_bytes: int,
    sar_wavelength: float | None,
) -> tuple[RasterImage, int]:
    """(image read at ``config.read_size`` named ``name``, file size in bytes) of an upload.

    n_images / upload_bytes: what the conversation already holds, against ``config.max_images``
    and ``config.max_total_upload_mb``. Raises `DemoError` with the reason and the fix.
    """
    if n_images >= config.max_images:
        raise DemoError(
            f"{name}: this conversation already has {config.max_images} images; press "
            "'New conversation' to start again"
        )
    if path.suffix.lower() not in UPLOAD_EXTENSIONS:
        raise DemoError(
            f"{name}: {path.suffix or 'no extension'} files are not supported; upload PNG, JPG, "
            "GeoTIFF (.tif) or JPEG 2000 (.jp2)"
        )
    if not path.is_file():
        raise DemoError(f"{name}: the upload did not arrive; try again")
    size = path.stat().st_size
    size_mb = size / 2**20
    if size_mb > config.max_upload_mb:
        raise DemoError(
            f"{name} is {size_mb:.0f} MB, over this demo's {config.max_upload_mb:g} MB "
            "limit: crop or downsample it (e.g. gdal_translate -outsize 25% 25%)"
        )
    total_mb = (upload_bytes + size) / 2**20
    if total_mb > config.max_total_upload_mb:
        raise DemoError(
            f"{name}: this conversation's files would total {total_mb:.0f} MB, over this "
            f"demo's {config.max_total_upload_mb:g} MB limit; press 'New conversation' "
            "to start again with fewer or smaller files"
        )
    try:
        image = read_raster(
            path,
            max_size=config.read_size,
            sar_wavelength=sar_wavelength,
            policy=ReadPolicy(max_pixels=config.max_pixels),
        )
    except RasterReadError as err:
        raise DemoError(_display_message(err, path, name)) from None
    image.path = name
    return image, size
