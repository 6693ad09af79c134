"""The import graph: `skyeye/` is the library and its subpackages follow the data path.

Every module of `skyeye/`, `instruct_data/`, `finetune/` and `demo/` is parsed (not imported);
its imports of these packages (also those inside functions, but not those under
`if TYPE_CHECKING:`) must point to the same layer or a lower one, and the module graph must have
no cycle. A `skyeye.*.__main__` module (and `skyeye.evaluate`, `python -m skyeye.evaluate`) is a
`python -m` entry point: nothing imports it, so it may run any part of the library and has no
layer (`python -m skyeye.chat` runs `skyeye.scenechat`, above `chat`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("skyeye", "instruct_data", "finetune", "demo")

#: Rank of each top-level package: a package may import only lower ranks (and itself).
PACKAGE_RANK = {"skyeye": 0, "instruct_data": 1, "finetune": 2, "demo": 2}

#: Rank of each part of `skyeye`, lowest first; a part may import only lower ranks and itself.
#: A new subpackage or top-level module must be placed here.
SKYEYE_LAYERS: dict[str, int] = {
    "errors": 0,
    "constants": 0,
    "atomic": 1,
    "logs": 1,
    "bundled": 1,
    "io": 2,
    "grounding": 3,
    "processing": 3,
    "modeling": 4,
    "render": 5,
    "data": 5,
    "chat": 6,
    "scene": 7,
    # The chat, scene-aware (above scene, which is above chat): the terminal's follow-up.
    "scenechat": 8,
    "evaluation": 8,
    "hub": 8,
    # Entry points for other tools and machines: they may use the whole library.
    "serve": 9,
    "batch": 9,
    "mcp": 9,
}

#: `python -m` entry modules not named `__main__`: `python -m skyeye.evaluate` (the spelling of the
#: README and the docs) runs `skyeye.evaluation.cli`. Like a `__main__`, nothing imports them and
#: they have no layer.
ENTRY_ALIASES = frozenset({"skyeye.evaluate"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str) -> str | None:
    """The longest known module that `name` (a module or a name inside one) refers to."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    is_package = MODULES[module].name == "__init__.py"
    targets: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                targets.add(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    resolved = {_resolve(t) for t in targets if t.split(".")[0] in PACKAGES}
    return {r for r in resolved if r is not None and r != module}


GRAPH = {module: _imports(module) for module in MODULES}


def _skyeye_part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "skyeye" and len(parts) > 1 else None


def test_every_skyeye_part_has_a_layer() -> None:
    parts = {_skyeye_part(m) for m in MODULES if m not in ENTRY_ALIASES} - {None}
    missing = sorted(parts - set(SKYEYE_LAYERS))
    assert not missing, f"place these parts of skyeye in SKYEYE_LAYERS: {missing}"


def _is_entry_module(module: str) -> bool:
    """A `python -m skyeye.<part>` entry module."""
    return module in ENTRY_ALIASES or (
        module.startswith("skyeye.") and module.split(".")[-1] == "__main__"
    )


def test_nothing_imports_an_entry_module() -> None:
    importers = {m: sorted(filter(_is_entry_module, t)) for m, t in GRAPH.items()}
    bad = {m: t for m, t in importers.items() if t}
    assert not bad, f"modules importing a `python -m` entry module: {bad}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module: str) -> None:
    if _is_entry_module(module):
        return  # a `python -m` entry point (nothing imports it): it may use the whole library
    top = module.split(".")[0]
    part = _skyeye_part(module)
    upward = []
    for target in sorted(GRAPH[module]):
        target_top = target.split(".")[0]
        if target_top != top:
            if PACKAGE_RANK[target_top] >= PACKAGE_RANK[top]:
                upward.append(target)
            continue
        if top != "skyeye" or module == "skyeye":
            continue
        target_part = _skyeye_part(target)
        if target_part is None or part is None or target_part == part:
            continue
        if SKYEYE_LAYERS[target_part] >= SKYEYE_LAYERS[part]:
            upward.append(target)
    assert not upward, f"{module} imports a layer at or above its own: {upward}"


def test_no_import_cycle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strongconnect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                strongconnect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            # A package importing its own submodules (re-exports) is not a cycle of logic.
            if len(component) > 1 and not _only_package_reexports(component):
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            strongconnect(node)
    assert not cycles, f"import cycles: {cycles}"


def _only_package_reexports(component: list[str]) -> bool:
    """True when the cycle closes only through a package `__init__` importing its children."""
    members = set(component)
    for module in component:
        for target in GRAPH[module] & members:
            package_edge = target.startswith(module + ".") or module.startswith(target + ".")
            if not package_edge:
                return False
    return True


def test_the_graph_sees_real_imports() -> None:
    # Guards the walker itself: known edges of the data path must be found.
    assert "skyeye.io.raster" in GRAPH["skyeye.processing.image_processor"]
    assert "skyeye.chat.session" in GRAPH["skyeye.chat.terminal"] or any(
        t.startswith("skyeye.chat.") for t in GRAPH["skyeye.chat.terminal"]
    )
