"""The lint package's own contract: documented rules, stdlib only, and it lints itself clean."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchstyle.lint import all_rules, files, registry
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


def test_one_rule_per_file_and_unique_names() -> None:
    modules = sorted(p.stem for p in (PACKAGE / "rules").glob("*.py") if p.stem != "__init__")
    by_module: dict[str, list[str]] = {}
    for code, rule in RULES.items():
        by_module.setdefault(rule.__module__.rsplit(".", 1)[1], []).append(code)
    assert sorted(by_module) == modules
    assert all(len(codes) == 1 for codes in by_module.values()), by_module
    assert len({rule.name for rule in RULES.values()}) == len(RULES)


def test_off_by_default() -> None:
    assert {code for code, rule in RULES.items() if not rule.default_enabled} == {"TS601", "TS602"}


def test_files_stay_small() -> None:
    for path in [
        *PACKAGE.rglob("*.py"),
        *Path(__file__).parent.glob("*.py"),
        REPO / "bench" / "lint_speed.py",
    ]:
        assert path.read_text(encoding="utf-8").count("\n") < 700, path


def test_lint_package_imports_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"tomli", "torchstyle"}
    for path in PACKAGE.rglob("*.py"):
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
                    assert name.startswith(("torchstyle.lint", "torchstyle.errors")), (
                        f"{path.name}: {name}"
                    )


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
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=60)


def test_importing_rules_has_no_side_effects() -> None:
    for path in (PACKAGE / "rules").glob("*.py"):
        importlib.import_module(f"torchstyle.lint.rules.{path.stem}")
    assert all_rules() == RULES


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
