"""Hostile and careless inputs, built in the test's own folder: GDAL VRTs that read other files or
fetch URLs, a sparse GeoTIFF declaring 300000² pixels, a 9000² PNG of a few hundred KB, and a
listener on 127.0.0.1 that records every HTTP request it receives (to prove none arrives)."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def vrt_over(source: str, size: int = 8, band_type: str = "Byte") -> str:
    """A VRT whose one band is ``source`` (a path, or ``/vsicurl/http://...``)."""
    return (
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">'
        f'<VRTRasterBand dataType="{band_type}" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    )


def vrt_raw(path: str, nodata: int, width: int = 1) -> str:
    """A ``VRTRawRasterBand`` reading any file's bytes as pixels (the one-byte oracle)."""
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="1">'
        '<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">'
        f"<NoDataValue>{nodata}</NoDataValue>"
        f'<SourceFilename relativetoVRT="0">{path}</SourceFilename>'
        "<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>1</LineOffset>"
        "</VRTRasterBand></VRTDataset>"
    )


def write_geotiff(path: Path, data: np.ndarray, **profile) -> Path:
    """A small georeferenced GeoTIFF of ``data`` (C, H, W)."""
    import rasterio
    from rasterio.transform import from_origin

    c, h, w = data.shape
    base = dict(
        driver="GTiff", width=w, height=h, count=c, dtype=data.dtype.name, crs="EPSG:32633",
        transform=from_origin(500000, 5800000, 10, 10),
    )
    with rasterio.open(path, "w", **(base | profile)) as dst:
        dst.write(data)
    return path


def sparse_geotiff(path: Path, size: int = 300_000) -> Path:
    """A tiled GeoTIFF declaring ``size``² pixels with no tile written (a few hundred KB)."""
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
        crs="EPSG:32633", transform=from_origin(500000, 5800000, 10, 10), tiled=True,
        blockxsize=4096, blockysize=4096, sparse_ok=True, BIGTIFF="YES",
    ):
        pass
    return path


def big_png(path: Path, size: int = 9000) -> Path:
    """A ``size``² RGB PNG of one colour: a few hundred KB that decode to size² x 3 bytes."""
    from PIL import Image

    Image.new("RGB", (size, size), (40, 90, 160)).save(path, optimize=False, compress_level=9)
    return path


def data_url(path: Path, mime: str = "image/tiff") -> str:
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode()


@contextmanager
def listener() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 recording the request lines it receives: (base URL, lines)."""
    seen: list[str] = []

    class Record(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.append(self.requestline)
            self.send_response(404)
            self.end_headers()

        do_GET = do_HEAD = do_POST = _any

        def log_message(self, *args) -> None:  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
