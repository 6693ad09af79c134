"""One console script per `python -m` entry point, running the same `main(argv=None) -> int`.

`python -m skyeye.X` is `skyeye-X`, `python -m skyeye.evaluate` is `skyeye-evaluate` and
`python -m demo` is `skyeye-demo`: the `[project.scripts]` of pyproject.toml are compared with the
function each entry module runs (parsed, not imported: serve, mcp and the demo need extras).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
    "scripts"
]


def _entry_modules() -> dict[str, Path]:
    """Console script name -> the `python -m` entry module it must match."""
    found = {f"skyeye-{path.parent.name}": path for path in (ROOT / "skyeye").glob("*/__main__.py")}
    found["skyeye-evaluate"] = ROOT / "skyeye" / "evaluate.py"
    found["skyeye-demo"] = ROOT / "demo" / "__main__.py"
    return found


ENTRY_MODULES = _entry_modules()


def _runs(path: Path) -> str:
    """`module:main` of the `main` that the entry module imports and runs."""
    tree = ast.parse(path.read_text(), filename=str(path))
    targets = [
        f"{node.module}:main"
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and any(a.name == "main" for a in node.names)
    ]
    assert len(targets) == 1, f"{path}: import exactly one `main` to run, found {targets}"
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "main"
    ]
    assert calls and all(not c.args and not c.keywords for c in calls), (
        f"{path}: run `sys.exit(main())`, with no arguments (the console script passes none)"
    )
    return targets[0]


def test_the_entry_modules_are_found() -> None:
    assert {"skyeye-chat", "skyeye-serve", "skyeye-scene", "skyeye-evaluate"} <= set(ENTRY_MODULES)


@pytest.mark.parametrize("script", sorted(ENTRY_MODULES))
def test_each_entry_point_has_its_console_script(script: str) -> None:
    assert script in SCRIPTS, f"pyproject.toml [project.scripts] lacks {script}"
    assert SCRIPTS[script] == _runs(ENTRY_MODULES[script]), (
        f"{script} runs {SCRIPTS[script]}, `python -m` runs {_runs(ENTRY_MODULES[script])}"
    )


def test_no_console_script_without_an_entry_point() -> None:
    assert sorted(set(SCRIPTS) - set(ENTRY_MODULES)) == []


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_main_takes_argv_and_returns_an_exit_code(script: str) -> None:
    module, function = SCRIPTS[script].split(":")
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text(), filename=str(path))
    (main,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    args = main.args
    assert [a.arg for a in args.args] == ["argv"] and not args.kwonlyargs, (
        f"{SCRIPTS[script]}: the signature is main(argv=None)"
    )
    assert isinstance(args.defaults[0], ast.Constant) and args.defaults[0].value is None
    assert isinstance(main.returns, ast.Name) and main.returns.id == "int", (
        f"{SCRIPTS[script]} must return an int exit code"
    )
