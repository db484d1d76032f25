"""The lint package's own contract: documented rules, stdlib only, and it lints itself clean."""

from __future__ import annotations

import ast
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import HANG_TIMEOUT
from torchstyle.lint import all_rules, files, registry
from torchstyle.lint.base import Rule
from torchstyle.lint.runner import Linter, decode_source

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "torchstyle" / "lint"
RULES = all_rules()
SECTIONS = ("What:", "Why:", "Example:", "Use instead:")


@pytest.mark.parametrize("code", list(RULES))
def test_rule_is_documented(code: str) -> None:
    rule = RULES[code]
    doc = inspect.cleandoc(rule.__doc__ or "")
    positions = [doc.find(section) for section in SECTIONS]
    assert all(p > 0 for p in positions) and positions == sorted(positions), (
        f"{code}: {SECTIONS} in order"
    )
    assert ("Fix:" in doc) == (rule.fixable is not None), (
        f"{code}: document the fix (only) if it has one"
    )
    assert rule.message and rule.name
    docs = (REPO / "docs" / "lint.md").read_text(encoding="utf-8")
    assert f"`{code}`" in docs and rule.name in docs, f"{code} is missing from docs/lint.md"


def test_one_rule_per_file_in_its_category_folder_and_unique_names() -> None:
    modules = sorted(
        p.relative_to(PACKAGE / "rules").with_suffix("").as_posix()
        for p in (PACKAGE / "rules").glob("*/*.py")
        if p.stem != "__init__"
    )
    assert not [p for p in (PACKAGE / "rules").glob("*.py") if p.stem != "__init__"], (
        "rules live in the folder of their category"
    )
    by_module: dict[str, list[str]] = {}
    for code, rule in RULES.items():
        folder, stem = rule.__module__.split(".")[-2:]
        assert folder == registry.FOLDERS[code[2]], f"{code} is in rules/{folder}/"
        by_module.setdefault(f"{folder}/{stem}", []).append(code)
    assert sorted(by_module) == modules
    assert all(len(codes) == 1 for codes in by_module.values()), by_module
    assert len({rule.name for rule in RULES.values()}) == len(RULES)


def test_off_by_default() -> None:
    off = {code for code, rule in RULES.items() if not rule.default_enabled}
    assert off == {"TS101", "TS104", "TS312", "TS601", "TS602"}


def test_files_stay_small() -> None:
    for path in [
        *PACKAGE.rglob("*.py"),
        *Path(__file__).parent.glob("*.py"),
        REPO / "bench" / "lint_speed.py",
    ]:
        assert path.read_text(encoding="utf-8").count("\n") < 700, path


def test_lint_package_imports_only_the_standard_library() -> None:
    stdlib = set(sys.stdlib_module_names) | {"tomli", "torchstyle"}
    for path in PACKAGE.rglob("*.py"):
        # the language server speaks LSP through the optional extra torchstyle[lsp]
        allowed = stdlib | ({"pygls", "lsprotocol"} if path.name == "lsp.py" else set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                if name.startswith("torchstyle"):
                    # writes is a leaf of the standard library alone (the one write path)
                    assert name.startswith(
                        ("torchstyle.lint", "torchstyle.errors", "torchstyle.writes")
                    ), f"{path.name}: {name}"


def test_linting_does_not_import_torch(tmp_path: Path) -> None:
    # Load torchstyle.lint without torchstyle/__init__.py (which pulls in the models).
    script = (
        "import sys, types\n"
        f"pkg = types.ModuleType('torchstyle'); pkg.__path__ = [{str(REPO / 'torchstyle')!r}]\n"
        "sys.modules['torchstyle'] = pkg\n"
        "from torchstyle.lint import lint_source\n"
        "found = lint_source('import torch\\ny = model.forward(x)\\n', select=['ALL'])\n"
        "assert [f.code for f in found] == ['TS102'], found\n"
        "heavy = sorted(m for m in ('torch', 'numpy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=HANG_TIMEOUT)


def test_each_rule_module_registers_exactly_its_own_rule(tmp_path: Path) -> None:
    # A fresh interpreter: nothing is registered before the scan, and importing each module
    # on its own adds exactly the one rule defined in it.
    script = (
        "import importlib, json, pkgutil\n"
        "from torchstyle.lint import registry\n"
        "assert not registry._RULES, sorted(registry._RULES)\n"
        "added = {}\n"
        "for folder in registry.FOLDERS.values():\n"
        "    pkg = importlib.import_module(f'torchstyle.lint.rules.{folder}')\n"
        "    for info in pkgutil.iter_modules(pkg.__path__):\n"
        "        before = set(registry._RULES)\n"
        "        module = importlib.import_module(f'{pkg.__name__}.{info.name}')\n"
        "        added[module.__name__] = sorted(set(registry._RULES) - before)\n"
        "print(json.dumps(added))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        check=True,
    )
    added = json.loads(done.stdout)
    assert all(len(codes) == 1 for codes in added.values()), added
    assert {codes[0]: module for module, codes in added.items()} == {
        code: rule.__module__ for code, rule in RULES.items()
    }


def test_register_refuses_a_taken_code_and_a_wrong_folder() -> None:
    taken = type("Clash", (Rule,), {"code": "TS102", "name": "clash", "__module__": "x.y"})
    with pytest.raises(TypeError, match="TS102 is taken"):
        registry.register(taken)
    astray = type(
        "Astray",
        (Rule,),
        {"code": "TS199", "name": "astray", "__module__": "torchstyle.lint.rules.loops.astray"},
    )
    with pytest.raises(TypeError, match="rules/modules/"):
        registry.register(astray)
    assert "TS199" not in registry.all_rules() and RULES["TS102"].name == "forward-call"


def test_lints_itself_clean() -> None:
    linter = Linter()
    patterns = files.compile_patterns([*files.DEFAULT_EXCLUDES, "fixtures/"], os.sep)
    paths = [
        *files.iter_python_files(str(PACKAGE), patterns),
        str(REPO / "bench" / "lint_speed.py"),
    ]
    paths += files.iter_python_files(str(Path(__file__).parent), patterns)
    findings = []
    for path in paths:
        text = decode_source(Path(path).read_bytes()).text
        findings += linter.lint(text, os.path.relpath(path, REPO))
    assert findings == []


def test_docs_describe_the_code_scheme() -> None:
    docs = (REPO / "docs" / "lint.md").read_text(encoding="utf-8")
    for digit, title in registry.CATEGORIES.items():
        assert f"TS{digit}xx" in docs and title in docs
