"""The generator's input spec: scenes (an image + label sources) and generation options, from YAML.

A spec file looks like::

    root: /data                 # relative paths below resolve against it (default: the file's folder)
    seed: 0
    options: {tile_size: 128, stride: 128, tasks: [caption, presence, proportion, refer, segmentation]}
    scenes:
      - id: berlin
        image: {path: s2/IMG_DATA, sensor: sentinel-2}
        labels:
          - {type: vector, path: osm.gpkg, class_field: fclass, classes: {forest: forest, water: water}}
          - {type: index, classes: [water, vegetation, cloud]}

See docs/from_rasters.md for every key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skyeye.errors import SpecError

LABEL_TYPES = ("class_raster", "vector", "index")
INDEX_CLASSES = ("water", "vegetation", "cloud")
TASK_NAMES = ("caption", "presence", "proportion", "refer", "segmentation", "mcq", "count")
LAYOUTS = ("CHW", "HWC", "TCHW", "THWC")


@dataclass
class ImageSpec:
    """Where an image comes from: a raster file / band-per-file folder (``path``) or a NumPy array.

    Arrays (``array``: .npy or .npz with ``key``) need ``layout`` and ``band_names``; ``crs`` and
    ``bounds`` (left, bottom, right, top) give them a georeference. ``scale`` turns the values into
    0-1 reflectance for the spectral-index labels (None: guessed from the data, and logged).
    """

    path: str | None = None
    array: str | None = None
    key: str | None = None
    layout: str = "CHW"
    time_index: int | None = None
    band_names: list[str] | None = None
    wavelengths: list[float | None] | None = None
    sensor: str | None = None
    sensor_label: str | None = None  # how prompts name it ("Sentinel-2"); default from sensor
    crs: str | None = None
    bounds: list[float] | None = None
    max_size: int | None = None
    scale: float | None = None
    north_up: bool | None = None  # for arrays without bounds: are rows north to south?


@dataclass
class LabelSpec:
    """One label source.

    class_raster: ``path`` (GeoTIFF, reprojected onto the image grid) or ``array`` (same H, W),
        ``classes`` {code: name}, ``nodata`` codes meaning unlabelled.
    vector: ``path`` (GeoPackage/GeoJSON/...), ``layer``, ``class_field``, ``classes``
        {attribute value: name}; later entries of ``classes`` are drawn on top of earlier ones.
    index: ``classes`` from water / vegetation / cloud, ``water_index`` ndwi|mndwi|vv_db (SAR),
        ``thresholds`` overrides; computed on the scene's ``label_image`` if it has one.
    """

    type: str
    path: str | None = None
    array: str | None = None
    key: str | None = None
    layout: str = "HW"
    time_index: int | None = None
    layer: str | None = None
    class_field: str | None = None
    classes: Any = None
    nodata: list[int] = field(default_factory=list)
    water_index: str = "ndwi"
    thresholds: dict[str, float] = field(default_factory=dict)
    negatives: bool = True  # may "no" answers be drawn from this source's absences?
    name: str | None = None


@dataclass
class SceneSpec:
    """One scene: an image, its label sources and per-scene tiling overrides."""

    id: str
    image: ImageSpec
    labels: list[LabelSpec]
    scene: str | None = None  # hold-out group (several dates of one place share it); default id
    source: str = "from_rasters"
    label_image: ImageSpec | None = None  # optical image the index labels come from (SAR scenes)
    tile_size: int | None = None
    stride: int | None = None
    min_valid: float | None = None
    min_labelled: float | None = None
    split: str | None = None  # force "train" / "val"
    scales: list[int] | None = None  # zoom factors for this scene (default: options.scales)

    @property
    def group(self) -> str:
        return self.scene or self.id


@dataclass
class Options:
    """Generation options shared by all scenes (scene keys override tiling)."""

    tile_size: int = 128
    stride: int | None = None  # default: tile_size (no overlap)
    min_valid: float = 0.9  # fraction of pixels with every band finite
    min_labelled: float = 0.3  # fraction of valid pixels that carry a label
    tasks: list[str] = field(default_factory=lambda: list(TASK_NAMES))
    flips: bool = False
    rot90: bool = False
    aug_copies: int = 1  # augmented variants per tile when flips/rot90 are on
    band_subsets: list[str] = field(default_factory=lambda: ["all"])
    band_subset_mode: str = "random"  # random: one subset per tile variant; each: one per subset
    min_present: float = 0.01  # a class counts as present from this fraction of the tile
    min_region: float = 0.005  # smallest region (fraction of the tile) asked for as a box
    presence_pairs: int = 1  # yes/no pairs per tile and label source
    # Classes asked about in every tile whose layer has them (yes or no, besides the random
    # pairs), so their answers follow the pixels rather than the pair sampling.
    presence_focus: list[str] = field(default_factory=list)
    # Chance that a focus class present in a tile is asked (absent ones always are): below 1
    # when most tiles hold the class, so that "yes" does not become the safe answer.
    presence_focus_yes_rate: float = 1.0
    # Presence and proportion answers start with the class's mask ("<p>water</p> [SEG] Yes."),
    # so the chat can state the yes/no and the share its own mask measures.
    ground_answers: bool = False
    # Zoom factors: 1 tiles the native grid; f > 1 also tiles f x f block averages (majority-vote
    # labels), the scale at which the chat shows the model a whole scene.
    scales: list[int] = field(default_factory=lambda: [1])
    val_scenes: list[str] = field(default_factory=list)
    val_fraction: float = 0.0  # deterministic per-scene split when val_scenes is empty
    seed: int = 0


def _build(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise SpecError(f"{where}: unknown keys {unknown}; allowed: {sorted(names)}")
    try:
        return cls(**d)
    except TypeError as err:
        raise SpecError(f"{where}: {err}") from None


def parse_image(d: Any, where: str) -> ImageSpec:
    im = _build(ImageSpec, d, where)
    if (im.path is None) == (im.array is None):
        raise SpecError(f"{where}: give exactly one of 'path' (raster) or 'array' (.npy/.npz)")
    if im.array is not None:
        if im.layout not in LAYOUTS:
            raise SpecError(f"{where}.layout: {im.layout!r} not one of {LAYOUTS}")
        if not im.band_names:
            raise SpecError(f"{where}: an array image needs band_names (one per band)")
        if im.layout.startswith("T") and im.time_index is None:
            raise SpecError(f"{where}: layout {im.layout} needs time_index (which date)")
    if im.bounds is not None and len(im.bounds) != 4:
        raise SpecError(f"{where}.bounds: give [left, bottom, right, top]")
    return im


def parse_label(d: Any, where: str) -> LabelSpec:
    lab = _build(LabelSpec, d, where)
    if lab.type not in LABEL_TYPES:
        raise SpecError(f"{where}.type: {lab.type!r} not one of {LABEL_TYPES}")
    if lab.type == "index":
        cls = lab.classes or list(INDEX_CLASSES)
        bad = [c for c in cls if c not in INDEX_CLASSES]
        if bad or not isinstance(cls, list):
            raise SpecError(f"{where}.classes: index labels are a list from {INDEX_CLASSES}")
        lab.classes = list(cls)
        if lab.water_index not in ("ndwi", "mndwi", "vv_db"):
            raise SpecError(
                f"{where}.water_index: use 'ndwi' (green-NIR), 'mndwi' (green-SWIR1) or "
                "'vv_db' (SAR VV backscatter threshold)"
            )
        if lab.water_index == "vv_db" and lab.classes != ["water"]:
            raise SpecError(
                f"{where}.classes: a VV backscatter threshold gives water only: [water]"
            )
        return lab
    if not isinstance(lab.classes, dict) or not lab.classes:
        raise SpecError(f"{where}.classes: give a mapping {{code or attribute value: class name}}")
    if lab.type == "class_raster":
        if (lab.path is None) == (lab.array is None):
            raise SpecError(f"{where}: give exactly one of 'path' or 'array'")
        try:
            lab.classes = {int(k): str(v) for k, v in lab.classes.items()}
        except ValueError:
            raise SpecError(f"{where}.classes: class-raster codes must be integers") from None
        if 0 in lab.nodata and 0 in lab.classes:
            raise SpecError(f"{where}: code 0 is both a class and nodata")
    if lab.type == "vector":
        if lab.path is None or lab.class_field is None:
            raise SpecError(f"{where}: a vector source needs 'path' and 'class_field'")
        lab.classes = {str(k): str(v) for k, v in lab.classes.items()}
    return lab


def parse_scene(d: Any, where: str) -> SceneSpec:
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected a mapping")
    d = dict(d)
    if "image" not in d or "labels" not in d or "id" not in d:
        raise SpecError(f"{where}: a scene needs 'id', 'image' and 'labels'")
    d["image"] = parse_image(d["image"], f"{where}.image")
    if d.get("label_image") is not None:
        d["label_image"] = parse_image(d["label_image"], f"{where}.label_image")
    if not isinstance(d["labels"], list) or not d["labels"]:
        raise SpecError(f"{where}.labels: give a non-empty list of label sources")
    d["labels"] = [parse_label(x, f"{where}.labels[{i}]") for i, x in enumerate(d["labels"])]
    sc = _build(SceneSpec, d, where)
    sc.id = str(sc.id)
    if sc.scales is not None:
        _check_scales(sc.scales, f"{where}.scales")
    if sc.split not in (None, "train", "val"):
        raise SpecError(f"{where}.split: use 'train' or 'val'")
    return sc


def parse_options(d: Any) -> Options:
    opts = _build(Options, d or {}, "options")
    bad = [t for t in opts.tasks if t not in TASK_NAMES]
    if bad:
        raise SpecError(f"options.tasks: unknown {bad}; choose from {TASK_NAMES}")
    if opts.tile_size < 8:
        raise SpecError("options.tile_size: use at least 8 pixels")
    if opts.band_subset_mode not in ("random", "each"):
        raise SpecError("options.band_subset_mode: 'random' or 'each'")
    if not 0 <= opts.val_fraction < 1:
        raise SpecError("options.val_fraction: must be in [0, 1)")
    _check_scales(opts.scales, "options.scales")
    if not 0 <= opts.presence_focus_yes_rate <= 1:
        raise SpecError("options.presence_focus_yes_rate: must be in [0, 1]")
    return opts


def _check_scales(scales: Any, where: str) -> None:
    ok = isinstance(scales, list) and scales
    if not ok or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in scales):
        raise SpecError(f"{where}: give a list of integer zoom factors >= 1, e.g. [1, 4]")


def load_spec(path: str | Path) -> tuple[Path, Options, list[SceneSpec]]:
    """Read a YAML spec -> (data root, options, scenes). Raises SpecError naming the bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"{path}: cannot read the spec ({err})") from None
    if not isinstance(raw, dict) or "scenes" not in raw:
        raise SpecError(f"{path}: the spec must be a mapping with a 'scenes' list")
    unknown = sorted(set(raw) - {"root", "seed", "options", "scenes"})
    if unknown:
        raise SpecError(f"{path}: unknown top-level keys {unknown} (root, seed, options, scenes)")
    root = Path(raw.get("root") or ".")
    if not root.is_absolute():
        root = path.parent / root
    opts = parse_options(raw.get("options"))
    if "seed" in raw:
        opts.seed = int(raw["seed"])
    scenes = [parse_scene(s, f"scenes[{i}]") for i, s in enumerate(raw["scenes"] or [])]
    ids = [s.id for s in scenes]
    if len(set(ids)) != len(ids):
        raise SpecError(f"{path}: scene ids must be unique, got {ids}")
    return root, opts, scenes
