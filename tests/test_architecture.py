"""The package's import arrows, as docs/architecture.md draws them: an arrow never points up.

Each top-level part of ``torchstyle`` may import only the parts listed for it. Imports inside
functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "torchstyle"

# Leaves that anything may import: errors, printed output, the data spec, the names of the
# settings' choices, the one write path and the optional extras' check hold no logic of ours.
LEAVES = {"errors", "output", "spec", "choices", "writes", "extras"}
# part -> the parts it may import (besides itself and the leaves).
ALLOWED: dict[str, set[str]] = {
    "nn": set(),
    "models": {"nn"},
    "data": set(),
    "engine": {"models", "data", "nn", "config", "recipes"},
    "experiments": {"engine", "config", "data", "models"},
    "lint": set(),
    # The package version only: torchstyle/__init__ imports nothing else eagerly.
    "scaffold": {"__init__"},
    "config": {"models", "data", "recipes"},
    # The training recipe's presets and checks: pure settings, read by config and engine.
    "recipes": set(),
    "api": {"engine", "config", "data", "models", "experiments"},
    "export": {"engine", "models", "data"},
    "models_command": {"models"},
    # The train/test/predict glue between the CLI and the library.
    "commands": {"engine", "experiments", "config", "data", "models", "export"},
    "__init__": {"api", "config", "engine", "models", "data", "nn", "export"},
    "__main__": {"cli"},
    "cli": {
        "engine",
        "lint",
        "scaffold",
        "experiments",
        "config",
        "models",
        "data",
        "export",
        "models_command",
        "commands",
        "api",
        "__init__",
    },
}
# Modules the engine and the data may not import: concrete models are found through the registry.
CONCRETE_MODELS = {p.stem for p in (PACKAGE / "models").glob("*.py")} - {
    "__init__",
    "base",
    "arguments",
    "sources",
    "adapters",
    "loading",
    "preprocessing",
    "registry",
}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from torchstyle import x` imports the part x (a name that is no part: __init__).
            if node.module != "torchstyle":
                found.append((node.lineno, node.module))
                continue
            for a in node.names:
                is_part = (PACKAGE / a.name).is_dir() or (PACKAGE / f"{a.name}.py").is_file()
                found.append((node.lineno, f"torchstyle.{a.name}" if is_part else "torchstyle"))
    return [(line, m) for line, m in found if m.split(".")[0] == "torchstyle"]


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_has_its_arrows_listed():
    assert {_part(p) for p in SOURCES} <= set(ALLOWED) | LEAVES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path):
    part = _part(path)
    allowed = ALLOWED.get(part, set()) | LEAVES | {part}
    bad = []
    for line, module in _imports(path):
        target = module.split(".")[1] if "." in module else "__init__"
        if target not in allowed:
            bad.append(f"line {line}: {module}")
        if (
            part in ("engine", "data")
            and target == "models"
            and module.split(".")[-1] in CONCRETE_MODELS
        ):
            bad.append(f"line {line}: {module} (a concrete model; use the registry)")
    assert not bad, f"{path.relative_to(PACKAGE)} ({part}) imports upward: {bad}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path that returns to its start, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, set()) - {node}):
            found = visit(nxt, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    return next((c for n in sorted(graph) if (c := visit(n, [])) is not None), None)


def test_no_part_may_import_a_part_that_imports_it():
    """The table allows no cycle; with test_imports_point_down the code has none either."""
    assert _cycle(ALLOWED) is None, f"import cycle allowed: {' -> '.join(_cycle(ALLOWED) or [])}"


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"config": {"engine"}, "engine": {"config"}}) == ["config", "engine", "config"]
