"""A raster layer -> the image a SkyEye request carries: the whole layer, the map canvas extent or
a drawn rectangle, at the layer's native resolution, as a GeoTIFF that keeps its band
descriptions (GDAL's translate), or as a path when the server reads the file itself. A layer
whose CRS cannot become longitude/latitude is refused before anything is sent."""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsMapLayer,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)

from .client import SkyEyeClientError

#: Largest GeoTIFF the plugin uploads inside a request (the server's --max-request-mb is 64 by
#: default; base64 adds a third).
MAX_UPLOAD_BYTES = 45 * 1024 * 1024


def layer_file(layer: QgsMapLayer | None) -> Path:
    """The local file behind a raster layer; a one-line error for anything else."""
    if layer is None:
        raise SkyEyeClientError("no layer chosen: pick a raster layer in the SkyEye panel")
    if not isinstance(layer, QgsRasterLayer):
        raise SkyEyeClientError(
            f"layer '{layer.name()}' is not a raster: SkyEye looks at images (GeoTIFF, JP2...)"
        )
    path = layer.source().split("|")[0]
    if layer.providerType() != "gdal" or not os.path.isfile(path):
        raise SkyEyeClientError(
            f"layer '{layer.name()}' has no local file (a web/WMS layer?): save it as a GeoTIFF "
            "first (right click > Export > Save As...) and ask about that layer"
        )
    return Path(path)


def check_crs(layer: QgsRasterLayer) -> None:
    """An error unless the layer's CRS can be turned into longitude/latitude: the server
    answers with masks and boxes in EPSG:4326, which a local engineering grid or a raster
    without a CRS cannot become."""
    crs = layer.crs()
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    if not crs.isValid():
        problem = "has no CRS"
    elif not QgsCoordinateTransform(crs, wgs84, QgsProject.instance()).isValid():
        problem = f"is in a CRS SkyEye cannot place on the Earth ({crs.description() or 'unknown'})"
    else:
        return
    raise SkyEyeClientError(
        f"layer '{layer.name()}' {problem}: SkyEye answers in longitude/latitude; set the "
        "layer's real CRS (Layer Properties > Source) or warp it (Raster > Projections > Warp)"
    )


def layer_extent(
    layer: QgsRasterLayer, extent: QgsRectangle | None, crs: QgsCoordinateReferenceSystem | None
) -> QgsRectangle | None:
    """``extent`` (in ``crs``, e.g. the canvas's) in the layer's CRS, clipped to the layer;
    None for the whole layer; an error when it misses the layer."""
    if extent is None:
        return None
    if crs is not None and crs != layer.crs():
        extent = QgsCoordinateTransform(
            crs, layer.crs(), QgsProject.instance()
        ).transformBoundingBox(extent)
    clipped = extent.intersect(layer.extent())
    if clipped.isEmpty():
        raise SkyEyeClientError(
            f"the chosen area does not overlap layer '{layer.name()}': pan to the layer or ask "
            "about the whole layer"
        )
    return clipped


def write_geotiff(layer: QgsRasterLayer, extent: QgsRectangle | None, target: str) -> str:
    """The layer's pixels inside ``extent`` (its CRS; None: all) at native resolution as a
    GeoTIFF with the band descriptions (GDAL translate keeps them)."""
    from osgeo import gdal

    source = layer_file(layer)
    options = {"format": "GTiff", "creationOptions": ["COMPRESS=DEFLATE"]}
    if extent is not None:
        options["projWin"] = [
            extent.xMinimum(),
            extent.yMaximum(),
            extent.xMaximum(),
            extent.yMinimum(),
        ]
    tmp = target + ".part.tif"
    result = gdal.Translate(tmp, str(source), **options)
    if result is None:
        raise SkyEyeClientError(f"GDAL could not write the area of '{layer.name()}' as a GeoTIFF")
    result = None  # closes the file
    os.replace(tmp, target)
    return target


def image_input(
    layer: QgsMapLayer | None,
    extent: QgsRectangle | None = None,
    crs: QgsCoordinateReferenceSystem | None = None,
    shared_folder: str = "",
) -> str:
    """What a request's ``image`` is for this layer and area: the file's path relative to
    ``shared_folder`` when the whole layer lies there (the server reads it), else a GeoTIFF
    data URL of the area."""
    source = layer_file(layer)
    assert isinstance(layer, QgsRasterLayer)
    check_crs(layer)
    area = layer_extent(layer, extent, crs)
    if area is None and shared_folder:
        root = Path(shared_folder).resolve()
        if source.resolve().is_relative_to(root):
            return str(source.resolve().relative_to(root))
    if (
        area is None
        and source.suffix.lower() in (".tif", ".tiff")
        and (source.stat().st_size <= MAX_UPLOAD_BYTES)
    ):
        data = source.read_bytes()
    else:
        with tempfile.TemporaryDirectory(prefix="skyeye-qgis-") as tmp:
            data = Path(write_geotiff(layer, area, os.path.join(tmp, "area.tif"))).read_bytes()
    if len(data) > MAX_UPLOAD_BYTES:
        raise SkyEyeClientError(
            f"the area of '{layer.name()}' is {len(data) / 2**20:.0f} MB as a GeoTIFF, too large "
            "to upload: draw a smaller rectangle, or put the file in the folder the server reads "
            "(SkyEye settings: shared folder) and use 'Analyze whole scene'"
        )
    return "data:image/tiff;base64," + base64.b64encode(data).decode()
