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
