"""SkyEye's answers as QGIS layers: masks as polygons with ``phrase`` and ``area_ha`` in the
attribute table, boxes as rectangles. Each layer is built whole in memory and only then added to
the project, so a failure never leaves half a layer behind."""

from __future__ import annotations

import json
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsFillSymbol,
    QgsJsonUtils,
    QgsProject,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .client import SkyEyeClientError

MASK_STYLE = {"color": "30,144,255,90", "outline_color": "0,90,200,255", "outline_width": "0.6"}
BOX_STYLE = {"color": "0,0,0,0", "outline_color": "255,140,0,255", "outline_width": "0.8"}


def features_layer(
    collection: dict[str, Any] | None, name: str, style: dict[str, str]
) -> QgsVectorLayer:
    """A styled EPSG:4326 polygon memory layer of a GeoJSON FeatureCollection: fields ``phrase``
    and ``area_ha`` (from the feature's ``area_m2``; the mask's measured area)."""
    layer = QgsVectorLayer("MultiPolygon?crs=EPSG:4326", name, "memory")
    provider = layer.dataProvider()
    provider.addAttributes(
        [QgsField("phrase", QVariant.String), QgsField("area_ha", QVariant.Double)]
    )
    layer.updateFields()
    features = []
    fields = QgsJsonUtils.stringToFields(json.dumps(collection or {}))
    for source in QgsJsonUtils.stringToFeatureList(json.dumps(collection or {}), fields):
        geometry = source.geometry()
        if geometry.isNull() or geometry.type() != QgsWkbTypes.PolygonGeometry:
            continue
        geometry.convertToMultiType()
        feature = QgsFeature(layer.fields())
        feature.setGeometry(geometry)
        props = {f.name(): source.attribute(f.name()) for f in source.fields()}
        area_m2 = props.get("area_m2")
        feature.setAttribute("phrase", props.get("phrase") or props.get("label") or "")
        feature.setAttribute("area_ha", float(area_m2) / 1e4 if area_m2 not in (None, "") else None)
        features.append(feature)
    if not provider.addFeatures(features)[0]:
        raise SkyEyeClientError(f"QGIS could not build the layer '{name}'")
    layer.updateExtents()
    layer.renderer().setSymbol(QgsFillSymbol.createSimple(style))
    layer.setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    return layer


def add_answer_layers(extension: dict[str, Any], name: str) -> list[QgsVectorLayer]:
    """The masks and boxes of an answer's ``skyeye`` extension added to the project (only those
    it has); returns the layers added."""
    layers = []
    if extension.get("masks_geojson"):
        layers.append(features_layer(extension["masks_geojson"], f"{name} mask", MASK_STYLE))
    if extension.get("boxes_geojson"):
        layers.append(features_layer(extension["boxes_geojson"], f"{name} boxes", BOX_STYLE))
    for layer in layers:
        QgsProject.instance().addMapLayer(layer)
    return layers
