"""torchstyle.nn keeps its rules: imports point down, no prints, a complete __all__."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import torchstyle.nn as tnn

NN_DIR = Path(tnn.__file__).parent
SOURCES = sorted(NN_DIR.glob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_sources_found() -> None:
    assert {p.name for p in SOURCES} >= {"layers.py", "networks.py", "losses.py", "ops.py"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_nn_imports_nothing_of_ours_but_nn(path: Path) -> None:
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: use absolute imports"
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            if module.split(".")[0] == "torchstyle":
                assert module.startswith("torchstyle.nn"), f"{path.name} imports {module}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_nn_never_prints(path: Path) -> None:
    calls = [
        node.lineno
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]
    assert not calls, f"{path.name} calls print() on lines {calls}; log instead"


def test_all_names_exist_and_public_callables_are_documented() -> None:
    for name in tnn.__all__:
        obj = getattr(tnn, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_public_constructors_are_keyword_only() -> None:
    # Drop-in replacements for torch layers (SNConv2d/SNLinear) keep torch's signature, and
    # GANLoss keeps its single ``mode`` positional; everything else is keyword-only.
    exempt = {"SNConv2d", "SNLinear", "GANLoss"}
    for name in tnn.__all__:
        obj = getattr(tnn, name)
        if not inspect.isclass(obj) or name in exempt or "__init__" not in vars(obj):
            continue
        params = list(inspect.signature(obj.__init__).parameters.values())[1:]
        positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert not positional, f"{name}.__init__ takes {positional} positionally"
