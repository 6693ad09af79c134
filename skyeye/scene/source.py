"""A scene on disk read window by window on one output grid (native resolution or a chosen gsd).

A single (multi-band) GeoTIFF/JP2 is read with windowed, decimated/upsampled reads; a
band-per-file product (Sentinel-2 JP2s at 10/20/60 m) is resampled band by band onto the grid of
its finest band (or the chosen gsd). GDAL decodes with all cores and a bounded block cache.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window, from_bounds

from skyeye.errors import RasterReadError, SceneError
from skyeye.io.band_files import band_file_order, check_band_files, read_band_window
from skyeye.io.band_metadata import complete_band_metadata
from skyeye.io.gdal import ReadOptions
from skyeye.io.image import RasterImage, check_dtype, check_file
from skyeye.io.photo import read_photo
from skyeye.io.raster import BAND_FILE_EXTENSIONS, PHOTO_EXTENSIONS, read_raster

logger = logging.getLogger(__name__)

#: GDAL block cache of a scene's window reads, in MiB. Windows are read a batch (one row of
#: windows) at a time and neighbours share the blocks of their overlap, which 64 MiB holds; the
#: next window row would need a whole block row (a full Sentinel-2 tile: 22 blocks x 13 bands,
#: ~150 MiB), which 128 MiB did not hold either, so a larger cache only adds to peak memory.
SCENE_CACHE_MIB = 64
#: Largest photo (PNG/JPEG, read whole as the chat reads it) in pixels: 3 GB of float32 RGB.
PHOTO_MAX_PIXELS = 256 * 1024 * 1024


@dataclass(frozen=True)
class Grid:
    """The output grid: (height, width) pixels, affine transform, CRS (may be None)."""

    height: int
    width: int
    transform: Affine
    crs: rasterio.crs.CRS | None

    @property
    def pixel_size(self) -> tuple[float, float]:
        """(x, y) side of a pixel in CRS units (of a rotated grid too)."""
        t = self.transform
        return math.hypot(t.a, t.d), math.hypot(t.b, t.e)

    @property
    def pixel_area_m2(self) -> float | None:
        """Area of one pixel in m² when the CRS is projected in metres, else None."""
        if self.crs is None or not self.crs.is_projected:
            return None
        factor = self.crs.linear_units_factor[1] if self.crs.linear_units_factor else 1.0
        return abs(self.transform.determinant) * factor * factor

    def bounds_of(self, x1: float, y1: float, x2: float, y2: float) -> list[float]:
        """[minx, miny, maxx, maxy] in the CRS of the pixel box (x1, y1)-(x2, y2): its four
        corners through the transform, so a rotated grid gives the box's true extent."""
        corners = [self.transform @ (x, y) for x in (x1, x2) for y in (y1, y2)]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        return [min(xs), min(ys), max(xs), max(ys)]

    def label(self) -> list[Any]:
        """The grid as plain data (part of a run's identity)."""
        return [self.height, self.width, list(self.transform)[:6], self.crs and str(self.crs)]


class SceneSource:
    """Open a scene (file, band folder or list of band files) and read windows of its grid.

    Args:
        source: a raster file, a folder of single-band files, or a list of band files.
        gsd: output pixel size in the scene CRS's units (metres for UTM); None = native (the
            finest band's).
        bbox: (minx, miny, maxx, maxy) to restrict the scene to, in `bbox_crs` (default: the
            scene's CRS).
        band_names / wavelengths / sensor: as for `skyeye.io.read_raster`.
        read_options: GDAL decoding threads and block cache (default: every core, 128 MiB: the
            windows are read one at a time, a bigger cache only adds to the run's memory). A
            native-resolution window covering several of the file's blocks is decoded on that
            many threads (GeoTIFF multi-threaded reads); windows start on whole pixels of the
            file.
    """

    band_names: list[str]

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        gsd: float | None = None,
        bbox: Sequence[float] | None = None,
        bbox_crs: str | None = None,
        band_names: Sequence[str] | None = None,
        wavelengths: Sequence[float] | None = None,
        sensor: str | None = None,
        sar_wavelength: float | None = None,
        read_options: ReadOptions | None = None,
    ) -> None:
        self.read_options = read_options or ReadOptions(cache_mib=SCENE_CACHE_MIB)
        self._stack = ExitStack()
        # Entered on the opening thread; rasterio's env of the main thread is GDAL's global
        # configuration, so reads from the pipeline's prefetch thread use it too.
        self._env = self._stack.enter_context(rasterio.Env(**self.read_options.gdal_env()))
        try:
            self._open(source, band_names, sensor)
            self.grid = self._make_grid(gsd, bbox, bbox_crs)
        except (RasterioError, OSError) as err:
            self.close()
            raise RasterReadError(f"{self.label}: cannot read the scene: {err}") from err
        except Exception:
            self.close()
            raise
        self._source = source
        self._meta: dict[str, Any] = dict(
            band_names=band_names,
            wavelengths=wavelengths,
            sensor=sensor,
            sar_wavelength=sar_wavelength,
        )
        self.gsd = gsd
        # Resolve band names / wavelengths once, on a 1-pixel probe.
        probe = RasterImage(
            data=np.zeros((len(self.band_names), 1, 1), dtype=np.float32),
            band_names=list(self.band_names),
            sensor=self._photo_sensor,  # a photo is "rgb", as `read_raster` says
            path=self.label,  # the file an error names
        )
        complete_band_metadata(
            probe,
            band_names=band_names if not self.band_files else None,
            wavelengths=wavelengths,
            sensor=sensor,
            sar_wavelength=sar_wavelength,
            names_from_files=self.band_files,
        )
        self.band_names = probe.band_names
        self.sensor = probe.sensor
        self.wavelengths = probe.wavelengths

    # ------------------------------------------------------------------ opening
    def _open(self, source: Any, band_names: Sequence[str] | None, sensor: str | None) -> None:
        self.photo: np.ndarray | None = None
        self._photo_sensor: str | None = None
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            files = sorted(
                p
                for p in Path(source).iterdir()
                if p.is_file() and p.suffix.lower() in BAND_FILE_EXTENSIONS
            )
            if not files:
                raise RasterReadError(
                    f"{source}: folder holds no band files ({sorted(BAND_FILE_EXTENSIONS)}): "
                    "pass a raster file or a folder of single-band GeoTIFF/JP2 files"
                )
        elif isinstance(source, (str, os.PathLike)):
            files = None
        else:
            files = [Path(f) for f in source]
            if not files:
                raise RasterReadError("got an empty list of band files: pass at least one file")
        self.label = str(
            source if files is None or not isinstance(source, list) else files[0].parent
        )
        self.band_files = files is not None
        if files is None and Path(source).suffix.lower() in PHOTO_EXTENSIONS:
            self._open_photo(check_file(Path(source)))
            return
        if files is None:
            path = check_file(Path(source))
            src = self._stack.enter_context(rasterio.open(path))
            for dtype in src.dtypes:
                check_dtype(dtype, self.label)
            alpha = [i + 1 for i, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha]
            self.indexes = [i for i in range(1, src.count + 1) if i not in alpha]
            if not self.indexes:
                raise RasterReadError(f"{self.label}: the raster has no bands besides alpha")
            self.alpha = alpha[0] if alpha else None
            self.srcs = [src]
            desc = [src.descriptions[i - 1] for i in self.indexes]
            if all(desc) and len(set(desc)) == len(desc):
                self.band_names = [str(d) for d in desc]
            else:
                self.band_names = [f"band_{i}" for i in self.indexes]
            self.ref = src
        else:
            files = [check_file(f) for f in files]
            names, files = band_file_order(files, band_names, sensor)
            self.srcs = [self._stack.enter_context(rasterio.open(f)) for f in files]
            check_band_files(self.label, files, self.srcs)
            self.band_names = names
            self.ref = min(self.srcs, key=lambda s: abs(s.transform.a * s.transform.e))
            self.alpha = None
            self.indexes = [1] * len(self.srcs)
        self.files = [Path(src.name) for src in self.srcs]
        self.dtype = self.ref.dtypes[0]
        nodatas = {src.nodata for src in self.srcs}
        self.nodata = nodatas.pop() if len(nodatas) == 1 else None

    def _open_photo(self, path: Path) -> None:
        """A PNG/JPEG read whole by the chat's photo reader (RGB, EXIF orientation, alpha as
        nodata, sensor "rgb"): its windows are then cut from memory, on pixel coordinates."""
        image = read_photo(path, None, PHOTO_MAX_PIXELS)
        self.photo = image.data
        self.band_names, self._photo_sensor = list(image.band_names), image.sensor
        self.srcs, self.files, self.indexes, self.alpha = [], [path], [], None
        self.dtype, self.nodata = "float32", None

    def _make_grid(self, gsd, bbox, bbox_crs) -> Grid:
        if self.photo is not None:
            if gsd is not None or bbox is not None:
                raise SceneError(
                    f"{self.label}: a photo (PNG/JPEG) has no georeference: drop --gsd and "
                    "--bbox, or give a GeoTIFF"
                )
            _, height, width = self.photo.shape
            return Grid(height=height, width=width, transform=Affine.identity(), crs=None)
        ref = self.ref
        if not self.band_files and gsd is None and bbox is None:
            # The file's own pixel grid, whatever its geotransform (north-up, rotated, none).
            return Grid(ref.height, ref.width, ref.transform, ref.crs)
        if any(not s.transform.is_rectilinear for s in self.srcs):
            raise SceneError(
                f"{self.label}: the raster's geotransform is rotated; it is analysed only on its "
                "own pixel grid: drop --gsd and --bbox (or warp it north-up first with gdalwarp)"
            )
        res = {round(abs(s.transform.a), 9) for s in self.srcs}
        if gsd is not None and gsd <= 0:
            raise SceneError(f"--gsd must be a positive pixel size, got {gsd}")
        if len(res) > 1:
            logger.warning(
                "%s: bands have different resolutions (%s); resampled to %s",
                self.label,
                ", ".join(f"{r:g}" for r in sorted(res)),
                f"the chosen gsd {gsd:g}" if gsd else f"the finest, {min(res):g}",
            )
        left, bottom, right, top = ref.bounds
        if bbox is not None:
            if len(bbox) != 4 or not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
                raise SceneError(f"--bbox must be minx,miny,maxx,maxy with min < max, got {bbox}")
            box = tuple(float(v) for v in bbox)
            if bbox_crs is not None and ref.crs is not None:
                from rasterio.warp import transform_bounds

                box = transform_bounds(_crs(bbox_crs), ref.crs, *box)
            il, ib = max(left, box[0]), max(bottom, box[1])
            ir, it = min(right, box[2]), min(top, box[3])
            if il >= ir or ib >= it:
                raise SceneError(
                    f"--bbox {list(bbox)} does not overlap the scene (bounds {[left, bottom, right, top]}"
                    f" in {ref.crs}): give a box inside the scene, in --bbox-crs"
                )
            left, bottom, right, top = il, ib, ir, it
        px = abs(ref.transform.a) if gsd is None else float(gsd)
        py = abs(ref.transform.e) if gsd is None else float(gsd)
        if gsd is None and bbox is not None:
            # Snap to the native pixel grid so windows stay aligned with the file's blocks.
            col0 = math.floor((left - ref.bounds.left) / px + 1e-9)
            row0 = math.floor((ref.bounds.top - top) / py + 1e-9)
            col1 = math.ceil((right - ref.bounds.left) / px - 1e-9)
            row1 = math.ceil((ref.bounds.top - bottom) / py - 1e-9)
            left, top = ref.bounds.left + col0 * px, ref.bounds.top - row0 * py
            width, height = col1 - col0, row1 - row0
        else:
            width = max(1, round((right - left) / px))
            height = max(1, round((top - bottom) / py))
        transform = Affine(px, 0.0, left, 0.0, -py, top)
        return Grid(height=int(height), width=int(width), transform=transform, crs=ref.crs)

    # ------------------------------------------------------------------ reading
    def window_transform(self, row: int, col: int) -> Affine:
        return self.grid.transform @ Affine.translation(col, row)

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """(C, height, width) float32 of the grid's window at (row, col); NaN = nodata."""
        if self.photo is not None:
            return self.photo[:, row : row + height, col : col + width].copy()
        if self.band_files:
            transform = self.window_transform(row, col)
            return np.stack(
                [
                    read_band_window(src, self.grid.crs, transform, (height, width))
                    for src in self.srcs
                ]
            )
        src = self.srcs[0]
        g, f = self.grid.transform, src.transform
        t = self.window_transform(row, col)
        if (g.a, g.b, g.d, g.e) == (f.a, f.b, f.d, f.e):
            # The file's own pixels (any geotransform, rotated too): a plain pixel window.
            c0, r0 = ~f @ (t.c, t.f)
            window = Window(round(c0), round(r0), width, height)
            resampling = Resampling.nearest
        else:
            bounds = rasterio.transform.array_bounds(height, width, t)
            window = from_bounds(*bounds, transform=src.transform)
            finer = abs(t.a) > abs(src.transform.a)
            resampling = Resampling.average if finer else Resampling.bilinear
        data = src.read(
            self.indexes,
            window=window,
            out_shape=(len(self.indexes), height, width),
            resampling=resampling,
            out_dtype="float32",
            boundless=False,
        )
        if src.nodata is not None and not np.isnan(src.nodata):
            data[data == np.float32(src.nodata)] = np.nan
        if self.alpha is not None:
            mask = src.read(self.alpha, window=window, out_shape=(height, width))
            data[:, mask == 0] = np.nan
        elif MaskFlags.per_dataset in src.mask_flag_enums[self.indexes[0] - 1]:
            mask = src.read_masks(self.indexes[0], window=window, out_shape=(height, width))
            data[:, mask == 0] = np.nan
        if any(np.dtype(d).kind == "f" for d in src.dtypes):  # integers are always finite
            data[~np.isfinite(data)] = np.nan
        return data

    def image(self, data: np.ndarray, row: int, col: int) -> RasterImage:
        """A `RasterImage` of a window's data (C, h, w), georeferenced on the grid."""
        return RasterImage(
            data=data,
            band_names=list(self.band_names),
            wavelengths=None if self.wavelengths is None else list(self.wavelengths),
            sensor=self.sensor,
            crs=self.grid.crs,
            transform=None if self.grid.crs is None else self.window_transform(row, col),
            nodata=self.nodata,
            path=self.label,
        )

    def overview(self, max_size: int = 512) -> np.ndarray | None:
        """(C, h, w) float32 of the whole source read decimated to ``max_size`` (NaN = nodata),
        bands in the scene's order; None when the read gives other bands than the scene's."""
        image = read_raster(
            self._source, max_size=max_size, read_options=self.read_options, **self._meta
        )
        if list(image.band_names) != list(self.band_names):
            logger.warning(
                "%s: the overview's bands %s are not the scene's %s",
                self.label,
                image.band_names,
                self.band_names,
            )
            return None
        return image.data

    def block_shape(self) -> tuple[int, int]:
        """(rows, cols) of the reference file's internal blocks (a photo: one block)."""
        if self.photo is not None:
            return self.grid.height, self.grid.width
        rows, cols = self.ref.block_shapes[0]
        return int(rows), int(cols)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> SceneSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _crs(value: str) -> rasterio.crs.CRS:
    text = str(value)
    try:
        return rasterio.crs.CRS.from_user_input(f"EPSG:{text}" if text.isdigit() else text)
    except Exception as err:  # rasterio raises CRSError
        raise SceneError(
            f"--bbox-crs {value!r} is not a CRS: give an EPSG code, e.g. 4326"
        ) from err
