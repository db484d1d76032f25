"""Fixture tests generated from the rule registry.

Every rule has ``fixtures/<CODE>.py`` (and optionally ``fixtures/<CODE>_<case>.py``): lines
marked ``# error`` must get a finding of that rule, lines marked ``# ok`` must not, and the
findings must match ``<fixture>.expected`` exactly (line, column, message). Fixable rules
also have ``<CODE>.fixed.py``: the fixed fixture, which must parse; fixtures marked
``# torchstyle-fixture: runnable`` are executed before and after the fix and must compute
the same ``RESULT``. Set ``TORCHSTYLE_UPDATE_FIXTURES=1`` to rewrite the expected files.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from torchstyle.lint import all_rules
from torchstyle.lint.base import Finding
from torchstyle.lint.runner import Linter

FIXTURES = Path(__file__).parent / "fixtures"
UPDATE = os.environ.get("TORCHSTYLE_UPDATE_FIXTURES") == "1"
RULES = all_rules()
RUNNABLE = "# torchstyle-fixture: runnable"
#: Pseudo-rules: TS001 has no valid-code negatives, TS002 no source that triggers it.
NO_NEGATIVES = {"TS001"}
NO_POSITIVES = {"TS002"}


def fixture_files(code: str) -> list[Path]:
    """The fixtures of rule ``code``."""
    return sorted(p for p in FIXTURES.glob(f"{code}*.py") if not p.name.endswith(".fixed.py"))


def render(findings: list[Finding]) -> str:
    """Findings as stored in ``.expected`` files."""
    return "".join(f"{f.line}:{f.col}: {f.code} {f.message}\n" for f in findings)


def marked(source: str, marker: str) -> set[int]:
    """Line numbers whose comment carries ``marker``."""
    return {i for i, line in enumerate(source.splitlines(), 1) if f"# {marker}" in line}


def snapshot(path: Path, actual: str) -> None:
    """Compares ``actual`` with the file at ``path`` (or writes it when updating)."""
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing {path.name}; run with TORCHSTYLE_UPDATE_FIXTURES=1"
    assert actual == path.read_text(encoding="utf-8")


CASES = [(code, path) for code in RULES for path in fixture_files(code)]


@pytest.mark.parametrize("code", list(RULES))
def test_every_rule_has_fixtures_with_positives_and_negatives(code: str) -> None:
    paths = fixture_files(code)
    assert FIXTURES / f"{code}.py" in paths, f"{code} has no fixtures/{code}.py"
    sources = [p.read_text(encoding="utf-8") for p in paths]
    if code not in NO_POSITIVES:
        assert any(marked(s, "error") for s in sources), f"{code}: no true positive"
    if code not in NO_NEGATIVES:
        assert any(marked(s, "ok") for s in sources), f"{code}: no true negative"


@pytest.mark.parametrize(("code", "path"), CASES, ids=[p.stem for _, p in CASES])
def test_fixture(code: str, path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    findings = Linter([code]).lint(source, path.name)
    assert {f.code for f in findings} <= {code}
    snapshot(path.with_suffix(".expected"), render(findings))
    lines = {f.line for f in findings}
    assert lines == marked(source, "error"), "findings must sit exactly on the `# error` lines"
    assert not lines & marked(source, "ok")


FIXABLE = [code for code, rule in RULES.items() if rule.fixable]


def run_fixture(source: str, name: str) -> object:
    """Executes a runnable fixture and returns its RESULT."""
    namespace: dict[str, object] = {"__name__": f"fixture_{name}"}
    exec(compile(source, name, "exec"), namespace)
    return namespace["RESULT"]


@pytest.mark.parametrize("code", FIXABLE)
def test_fix(code: str) -> None:
    path = FIXTURES / f"{code}.py"
    source = path.read_text(encoding="utf-8")
    linter = Linter([code])
    fixed, remaining, count = linter.fix(source, path.name, unsafe=True)
    assert count > 0, f"{code} is fixable but its fixture got no fix"
    ast.parse(fixed)
    snapshot(FIXTURES / f"{code}.fixed.py", fixed)
    assert not [f for f in remaining if f.fix is not None], "every offered fix was applied"
    assert linter.fix(fixed, path.name, unsafe=True)[2] == 0, "fixing twice changes nothing"
    safe_only, _, safe_count = linter.fix(source, path.name, unsafe=False)
    if RULES[code].fixable == "safe":
        assert safe_only == fixed
    else:
        # An unsafe rule may also offer safe fixes where they keep behaviour: exactly those
        # are applied without --unsafe-fixes, and every unsafe one is left.
        before = linter.lint(source, path.name)
        safe = [f for f in before if f.fix is not None and f.fix.applicability == "safe"]
        unsafe_left = [f for f in before if f.fix is not None and f.fix.applicability == "unsafe"]
        after = linter.lint(safe_only, path.name)
        assert safe_count == len(safe), "unsafe fixes need --unsafe-fixes"
        assert len([f for f in after if f.fix is not None]) == len(unsafe_left)
        if not safe:
            assert safe_only == source


@pytest.mark.parametrize(
    "code", [c for c in FIXABLE if RUNNABLE in (FIXTURES / f"{c}.py").read_text()]
)
def test_fixed_fixture_behaves_the_same(code: str) -> None:
    pytest.importorskip("torch")
    source = (FIXTURES / f"{code}.py").read_text(encoding="utf-8")
    fixed = (FIXTURES / f"{code}.fixed.py").read_text(encoding="utf-8")
    assert fixed != source
    assert run_fixture(fixed, f"{code}.fixed.py") == run_fixture(source, f"{code}.py")


def test_safe_fixes_have_runnable_fixtures() -> None:
    for code in FIXABLE:
        source = (FIXTURES / f"{code}.py").read_text(encoding="utf-8")
        findings = Linter([code]).lint(source, f"{code}.py")
        if any(f.fix is not None and f.fix.applicability == "safe" for f in findings):
            assert RUNNABLE in source, f"{code}: prove the safe fixes are safe"


def test_fixtures_are_only_for_known_rules() -> None:
    for path in FIXTURES.glob("*.py"):
        assert path.name[:5] in RULES, f"{path.name} belongs to no rule"
    for path in FIXTURES.glob("*.expected"):
        assert path.with_suffix(".py").exists(), f"{path.name} has no fixture"
