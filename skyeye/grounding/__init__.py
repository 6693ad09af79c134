"""Grounding in answers: boxes `{<x1><y1><x2><y2>}` and `<p>phrase</p> [SEG]` parsed from text
(`parse`), and their export to map coordinates, GeoJSON and GeoTIFF (`geo`); masks become
polygons with their areas in one place (`polygons.polygonize`, used by the chat, the server,
the demo and the scene alike).

May import `skyeye.io` and the layer-0 modules only (it never needs the model).
"""
