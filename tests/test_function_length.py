"""No function in the package is longer than the guide's 60 lines (def line to last line)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "torchstyle"
LIMIT = 60


def long_functions(root: Path, limit: int = LIMIT) -> list[str]:
    """Every function under ``root`` longer than ``limit`` lines, as ``path:line name (N)``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    where = path.relative_to(root.parent)
                    found.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_longer_than_the_limit():
    assert long_functions(PACKAGE) == [], "split these into named pieces"


def test_the_check_sees_a_long_function(tmp_path: Path):
    body = "".join(f"    x{i} = {i}\n" for i in range(LIMIT))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}")
    assert long_functions(tmp_path / "pkg") == [f"pkg/m.py:5 long ({LIMIT + 1} lines)"]
