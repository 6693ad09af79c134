"""Boxes and bad layers in the panel (Debian's QGIS, offscreen, live skyeye.serve with
skyeye-tiny): a box question adds an orange rectangle layer over the lake the mask found; a layer
whose CRS cannot become longitude/latitude, and a layer whose file is no readable raster any
more (the server refuses it), reach the message bar as one line and add no layer."""

from __future__ import annotations

import shutil

import pytest
from conftest import SCENE, bar_texts, wait_until

pytestmark = pytest.mark.qgis
LOCAL_GRID = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'


def _ask(qgis_app, iface, layer, question: str) -> set[str]:
    """Ask through the panel; the ids of the layers it added."""
    from qgis.core import QgsProject
    from skyeye.dock import SkyEyeDock

    QgsProject.instance().addMapLayer(layer)
    before = set(QgsProject.instance().mapLayers())
    dock = SkyEyeDock(iface)
    dock.layer_box.setLayer(layer)
    dock.question.setText(question)
    if dock.ask() is not None:
        assert wait_until(qgis_app, dock.ask_button.isEnabled, 180)
    return set(QgsProject.instance().mapLayers()) - before


def test_a_box_question_adds_a_rectangle_layer(qgis_app, iface, settings):
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsGeometry,
        QgsProject,
        QgsRasterLayer,
        QgsWkbTypes,
    )

    layer = QgsRasterLayer(str(SCENE), "berlin")
    added = _ask(qgis_app, iface, layer, "Give the bounding box of the largest lake.")
    project = QgsProject.instance()
    by_name = {project.mapLayer(i).name(): project.mapLayer(i) for i in added}
    # A lake is water, a class the decoder outlines: the chat draws the water mask first and the
    # box is its largest instance's box, named by the class it was measured on (issue 29).
    assert "SkyEye berlin boxes" in by_name, bar_texts(iface)
    assert set(by_name) <= {"SkyEye berlin mask", "SkyEye berlin boxes"}, set(by_name)
    boxes = list(by_name["SkyEye berlin boxes"].getFeatures())
    assert len(boxes) == 1 and boxes[0]["phrase"] == "water"
    box = boxes[0].geometry()
    assert box.type() == QgsWkbTypes.PolygonGeometry
    ring = box.asMultiPolygon()[0][0]
    assert len(ring) == 5  # four corners, closed
    # A rectangle on the scene's UTM grid (lon/lat skews it a little), inside the scene...
    to_wgs84 = QgsCoordinateTransform(
        layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), project
    )
    on_grid = QgsGeometry(box)
    on_grid.transform(to_wgs84, QgsCoordinateTransform.ReverseTransform)
    assert on_grid.area() == pytest.approx(on_grid.boundingBox().area(), rel=1e-3)
    assert layer.extent().buffered(1.0).contains(on_grid.boundingBox())
    # ...around water: the scene's own NDWI > 0 pixels (B03 vs B08) inside the box.
    assert _water_share(on_grid.boundingBox()) > 0.05
    for layer_id in added | {layer.id()}:
        project.removeMapLayer(layer_id)


def _water_share(extent) -> float:
    """Share of NDWI > 0 pixels (Sentinel-2 B03 green vs B08 NIR) of the scene inside ``extent``
    (a QgsRectangle in the scene's CRS)."""
    import numpy as np
    from osgeo import gdal

    ds = gdal.Open(str(SCENE))
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    c0, c1 = sorted(int((x - x0) / dx) for x in (extent.xMinimum(), extent.xMaximum()))
    r0, r1 = sorted(int((y - y0) / dy) for y in (extent.yMinimum(), extent.yMaximum()))
    c0, r0 = max(c0, 0), max(r0, 0)
    c1, r1 = min(c1 + 1, ds.RasterXSize), min(r1 + 1, ds.RasterYSize)
    names = [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)]
    green, nir = (
        ds.GetRasterBand(names.index(b) + 1).ReadAsArray(c0, r0, c1 - c0, r1 - r0).astype(float)
        for b in ("B03", "B08")
    )
    ndwi = (green - nir) / np.maximum(green + nir, 1e-6)
    return float((ndwi > 0).mean())


@pytest.mark.parametrize("case", ["local grid CRS", "unreadable file"])
def test_a_bad_layer_is_one_line_and_no_layer(qgis_app, iface, settings, tmp_path, case):
    from osgeo import gdal
    from qgis.core import QgsProject, QgsRasterLayer

    path = tmp_path / "scene.tif"
    if case == "local grid CRS":
        gdal.Translate(str(path), str(SCENE), outputSRS=LOCAL_GRID)
        expected = "is in a CRS SkyEye cannot place on the Earth (site grid)"
    else:
        shutil.copy(SCENE, path)
        expected = "not a readable raster"
    layer = QgsRasterLayer(str(path), "scene")
    assert layer.isValid()
    if case == "unreadable file":  # broken after QGIS opened it (a half-synced disk, say)
        path.write_bytes(path.read_bytes()[:4096])
    added = _ask(qgis_app, iface, layer, "Show me where the water is with a mask.")
    assert added == set()
    text = iface.messageBar().currentItem().text()
    assert expected in text, text
    assert "\n" not in text and "Traceback" not in text
    QgsProject.instance().removeMapLayer(layer.id())
