"""One copy of the shared pieces: exceptions live in `skyeye.errors`, shared names in
`skyeye.constants` (modules import them; none defines its own)."""

from __future__ import annotations

import ast
import builtins

from test_import_graph import MODULES

#: Names that only `skyeye/constants.py` may assign at module level.
SHARED_NAMES = {"IMAGE_TOKEN", "SEG_TOKEN", "GROUNDING_TOKENS", "IGNORE_INDEX", "MCQ_LETTERS"}
EXCEPTION_BASES = {
    name
    for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, BaseException)
}


def _classes_and_assignments(module: str) -> tuple[list[ast.ClassDef], set[str]]:
    tree = ast.parse(MODULES[module].read_text())
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assigned = {
        t.id
        for n in tree.body
        if isinstance(n, (ast.Assign, ast.AnnAssign))
        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        if isinstance(t, ast.Name)
    }
    return classes, assigned


def test_exceptions_live_in_skyeye_errors():
    errors = {c.name for c in _classes_and_assignments("skyeye.errors")[0]}
    stray = []
    for module in MODULES:
        if module == "skyeye.errors":
            continue
        for cls in _classes_and_assignments(module)[0]:
            bases = {b.id for b in cls.bases if isinstance(b, ast.Name)}
            if bases & (EXCEPTION_BASES | errors):
                stray.append(f"{module}.{cls.name}")
    assert stray == [], f"define these in skyeye/errors.py and import them: {stray}"


def test_shared_names_are_defined_once():
    stray = [
        f"{module}.{name}"
        for module in MODULES
        if module != "skyeye.constants"
        for name in _classes_and_assignments(module)[1] & (SHARED_NAMES | {"DTYPES"})
    ]
    assert stray == [], f"import these from skyeye.constants instead: {stray}"


# ------------------------------------------------------------ one copy of each rule
# In the spirit of transformers' `utils/check_copies.py`: a rule that lives twice drifts (the
# validation's MCQ parser read "A large harbour." as A, its cIoU of empty unions was 0, its water
# rule disagreed with the labels on 4 pixels). Each rule below has one home module; defining it
# (a module-level function, class or assignment of that name) anywhere else fails, and so does
# defining a retired copy's name.

#: Rule name -> the one module that defines it.
RULE_HOMES: dict[str, str] = {
    # answer parsers, one per answer kind (the chat's measured answers read them too)
    **dict.fromkeys(
        (
            "parse_yes_no",
            "parse_letter",
            "parse_count",
            "parse_percent",
            "parse_area_m2",
            "parse_boxes",
            "parse_seg_phrases",
            "strip_grounding",
            "ANSWER_PARSERS",
            "SHARE",
            "AREA",
            "AREA_UNITS",
            "VERDICT",
            "MEASURED_NOTE_OPEN",
        ),
        "skyeye.grounding.parse",
    ),
    # label rules and the index baselines built on the same normalised difference
    **dict.fromkeys(
        (
            "normalized_difference",
            "water_index_mask",
            "index_threshold_mask",
            "vv_threshold_mask",
            "sar_water_mask",
            "box_mean",
            "cloud_rule_mask",
            "DEFAULT_THRESHOLDS",
        ),
        "skyeye.grounding.label_rules",
    ),
    "index_masks": "instruct_data.from_rasters.spectral",
    # scoring rules
    **dict.fromkeys(("mask_iou", "iou_summary", "box_iou"), "skyeye.evaluation.metrics"),
    "training_priors": "skyeye.evaluation.priors",
    # mask -> polygons with their areas (see also test_masks_become_polygons_in_one_place)
    "polygonize": "skyeye.grounding.polygons",
}
#: Names of copies that were merged into the homes above: defining one again is a second copy.
RETIRED_COPIES = {
    "mcq_extract_letter",  # skyeye.grounding.parse.parse_letter
    "strip_leading_mask",  # skyeye.grounding.parse.strip_grounding
    "index_water",  # skyeye.grounding.label_rules.water_index_mask
    "ndwi_water",  # skyeye.grounding.label_rules.index_threshold_mask
    "mndwi_water",
    "vv_threshold_water",  # skyeye.grounding.label_rules.vv_threshold_mask
    "summarise_refer",  # the tasks' summarise
    "_geodesic_areas",  # the scene's areas: skyeye.grounding.polygons.polygonize
    "_to_4326",  # skyeye.grounding.polygons.to_epsg4326
}
#: Known second copies of a rule (module.name -> why it is not merged). Each is checked against
#: its home where both read (`test_known_copies_agree_with_their_home`).
KNOWN_RULE_COPIES = {
    # Not the same rule as skyeye.grounding.parse.parse_boxes (checked for issue 27): the data
    # side validates converted records and raises BoxParseError on any malformed, out-of-grid,
    # inverted, float or `<delim>`-joined box so the converter skips the record, and does not
    # read LHRS [x1, y1, x2, y2]; the model-output parser never raises and repairs all of those.
    # Merging either way would change which training records exist or make the chat drop
    # boxes. Where the strict one accepts a text, both give the same boxes (test below).
    "instruct_data.boxes.parse_boxes": "strict validator of converted records' boxes",
}
#: The polygonising primitives (mask -> polygons, and the sieve that decides which regions
#: count): only the one polygoniser imports them; the chat, the server, the demo and the scene
#: call `skyeye.grounding.polygons.polygonize`, so one mask gives the same polygons everywhere.
POLYGONISER_CALLS = {"shapes", "sieve"}
POLYGONISER = "skyeye.grounding.polygons"


def _definitions(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    names = {
        n.name
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    return names | _classes_and_assignments(module)[1]


def test_each_rule_is_defined_in_its_home_only():
    stray = []
    for module in MODULES:
        for name in _definitions(module):
            home = RULE_HOMES.get(name)
            if (home is not None and home != module) or name in RETIRED_COPIES:
                stray.append(f"{module}.{name}")
    stray = [s for s in stray if s not in KNOWN_RULE_COPIES]
    assert stray == [], f"import these rules from their one home (RULE_HOMES) instead: {stray}"


def test_every_rule_home_defines_its_rules():
    # Guards the check itself: a renamed rule must not leave RULE_HOMES pointing at nothing.
    missing = [f"{m}.{n}" for n, m in RULE_HOMES.items() if n not in _definitions(m)]
    assert missing == []
    # and a merged known copy leaves the allow-list with it
    merged = [
        c for c in KNOWN_RULE_COPIES if c.rsplit(".", 1)[1] not in _definitions(c.rsplit(".", 1)[0])
    ]
    assert merged == [], f"merged: remove from KNOWN_RULE_COPIES: {merged}"


def test_known_copies_agree_with_their_home():
    """Every text the strict record parser accepts, the model-output parser reads as the same
    boxes (coordinates and angles): the strict grammar is a subset of the one home's."""
    import random

    from instruct_data.boxes import format_box
    from instruct_data.boxes import parse_boxes as strict_boxes
    from skyeye.grounding.parse import parse_boxes

    rng = random.Random(27)
    for _ in range(300):
        texts = []
        for _ in range(rng.randint(1, 3)):
            x1, x2 = sorted(rng.randint(0, 100) for _ in range(2))
            y1, y2 = sorted(rng.randint(0, 100) for _ in range(2))
            angle = rng.choice([None, rng.randint(-90, 90), round(rng.uniform(-90, 90), 1)])
            texts.append(format_box((x1 / 100, y1 / 100, x2 / 100, y2 / 100), angle))
        text = "<p>a field</p> " + "".join(texts) + " and more."
        strict = [(b.xyxy, b.angle) for b in strict_boxes(text)]
        home = [((b.x1, b.y1, b.x2, b.y2), b.angle) for b in parse_boxes(text)]
        assert strict == home, text


def _imports_polygoniser(module: str) -> bool:
    tree = ast.parse(MODULES[module].read_text())
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "rasterio.features"
        and any(alias.name in POLYGONISER_CALLS for alias in node.names)
        for node in ast.walk(tree)
    )


def test_masks_become_polygons_in_one_place():
    found = {m for m in MODULES if _imports_polygoniser(m)}
    assert found == {POLYGONISER}, (
        f"mask -> polygons lives in {POLYGONISER} only (call its polygonize); "
        f"copies: {sorted(found - {POLYGONISER})}"
    )
