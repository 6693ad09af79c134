"""Photos (PNG, JPG, BMP, GIF, WebP) read with PIL into a `RasterImage`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skyeye.errors import RasterReadError
from skyeye.io.image import RasterImage, target_shape
from skyeye.io.policy import ReadPolicy


def read_photo(
    path: Path,
    max_size: int | None,
    max_pixels: int,
    *,
    policy: ReadPolicy | None = None,
    pil_format: str | None = None,
) -> RasterImage:
    """A PNG/JPG/... photo as (C, H', W') float32 (RGB, or one band for 16-bit/float images),
    shrunk to `max_size` (JPEGs decoded at a reduced DCT scale); transparent pixels are NaN.

    policy / pil_format: a request's file is opened by that one PIL plugin, its declared size
    checked before decoding (`skyeye.io.policy`).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    label = str(path)
    try:
        img = Image.open(path, formats=[pil_format] if pil_format else None)
    except UnidentifiedImageError as err:
        raise RasterReadError(f"{label}: not a readable image (corrupt or unknown format)") from err
    except Image.DecompressionBombError:
        # PIL's own guard (over ~179 MP) fires in open(), before our checks can name the size.
        raise RasterReadError(
            f"{label}: the image declares more pixels than PIL decodes safely (over "
            f"{2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} MP): downsample it, or convert it to "
            "a tiled GeoTIFF (read at reduced resolution without decoding every pixel)"
        ) from None
    with img:
        w, h = img.size
        if policy is not None:
            policy.check_size(w, h, len(img.getbands()), 4 if img.mode in ("I", "F") else 2, label)
        out_h, out_w = target_shape(h, w, max_size, max_pixels, label)
        if img.format == "JPEG" and (out_h, out_w) != (h, w):
            img.draft("RGB", (out_w, out_h))  # decode at a reduced DCT scale: less memory
        img.load()
        img = ImageOps.exif_transpose(img)  # type: ignore[assignment]  # an Image, no longer the file
        mode = img.mode
        if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(img, dtype=np.float32)[None]
            names, sensor = ["gray"], None  # high bit depth: units unknown, no wavelength guess
        else:
            has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info)
            rgba = np.asarray(img.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32)
            arr = np.moveaxis(rgba, -1, 0).copy()
            if has_alpha:
                arr[:3, arr[3] == 0] = np.nan
                arr = arr[:3]
            names, sensor = ["R", "G", "B"], "rgb"
    if arr.shape[1:] != (out_h, out_w):
        from skyeye.io.resample import resize_with_nodata

        arr = resize_with_nodata(arr, out_h, out_w)
    return RasterImage(
        data=np.ascontiguousarray(arr, dtype=np.float32),
        band_names=names,
        sensor=sensor,
        source_shape=(h, w),
        extra={"mode": mode},
    )
