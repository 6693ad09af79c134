"""Raster input: files (GeoTIFF, JP2, PNG/JPG, band-per-file folders and lists) -> `RasterImage`.

Owns reading with bounded memory (`raster`; photos in `photo`; GDAL read options and the chunked,
multi-threaded decimated read in `gdal`), band-per-file stacking (`band_files`), NaN-aware
resampling and the one label-mask resize rule (`resample`), the sensor registry mapping band names to wavelengths (`sensors`) and the
COCO RLE mask codec (`rle`). Imports nothing from SkyEye but `skyeye.errors` / `skyeye.constants`.
"""

from skyeye.io.raster import RasterImage, RasterReadError, read_raster

__all__ = ["RasterImage", "RasterReadError", "read_raster"]
