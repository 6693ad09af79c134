"""Stack band-per-file rasters into one multi-band GeoTIFF (for from_rasters scene specs).

Some sample scenes ship one file per band, and only some of those files carry the georeference
(rio-tiler's 19UDP previews: B01, B09 and B10). ``stack_band_files`` reads every band, takes the
CRS and transform from the first file that has one, checks that all bands share one grid, and
writes the stack atomically with band descriptions.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio


def stack_band_files(
    folder: Path, pattern: str, bands: list[str], out: Path, nodata: float | None = None
) -> Path:
    """Read ``folder / pattern.format(band=b)`` for each band and write (C, H, W) to ``out``.

    Raises FileNotFoundError naming a missing band file, ValueError when the grids differ.
    """
    arrays, crs, transform = [], None, None
    for band in bands:
        path = folder / pattern.format(band=band)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: is --shared-data the ../shared/data folder?"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                arrays.append(src.read(1))
                if crs is None and src.crs is not None:
                    crs, transform = src.crs, src.transform
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"{folder}: bands {bands} lie on different grids {sorted(shapes)}")
    data = np.stack(arrays).astype(np.result_type(*arrays))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.tif")
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": len(bands),
        "dtype": data.dtype.name,
        "compress": "deflate",
    }
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(bands, start=1):
            dst.set_band_description(i, name)
    tmp.rename(out)
    return out
