"""Notebooks (``.ipynb``): cells joined into one module, magics masked, cell locations in every
format, fixes written back byte-identical elsewhere; one-line errors for unlintable names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import HANG_TIMEOUT
from tests.lint.test_cli import REPO, lint
from torchstyle.lint import notebook


def cell(source: Any, outputs: list[Any] | None = None) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": ["x"]},
        "outputs": outputs or [],
        "source": source,
    }


def notebook_json(cells: list[dict[str, Any]], **dump: Any) -> str:
    book = {
        "cells": cells,
        "metadata": {"language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(book, **{"indent": 1, "ensure_ascii": False, **dump}) + "\n"


OUTPUT = {"name": "stdout", "output_type": "stream", "text": ["héllo\n"]}
CELLS = [
    {"cell_type": "markdown", "metadata": {}, "source": ["# A notebook\n"]},
    cell(["%matplotlib inline\n", "!pip install torch\n", "from torch import load\n"]),
    cell(["import torch.nn as nn\n", "files = !ls\n", "\n", "class Net(nn.Module):\n",
          "    def forward(self, x):\n", "        return x.numpy()\n"], [OUTPUT]),
    cell("%%bash\necho this is not python (\n"),
    cell(["%%capture\n", "net = Net()\n", "y = net.forward(1)\n", "state = load('a.pt')"]),
    cell(["w = load('b.pt')  # noqa: TS502\n", "%time z = net.forward(2)\n", "obj?"]),
]  # fmt: skip


def test_notebook_findings_in_every_format(tmp_path: Path) -> None:
    raw = notebook_json(CELLS)
    (tmp_path / "nb.ipynb").write_text(raw, encoding="utf-8")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "nb-checkpoint.ipynb").write_text(raw, encoding="utf-8")
    text = lint("--isolated", "--extend-select", "TS101", ".", cwd=tmp_path)
    # `load` imported in code cell 1 is known in cell 4: the cells are one module; the magics
    # (%time, !pip, %%capture, x = !ls, obj?) and the %%bash cell are neither parsed nor
    # reported; the noqa comment silences its own line only; checkpoints are not walked
    assert text.stdout.splitlines() == [
        "nb.ipynb:cell 2:6:16: TS101 `.numpy()` in `Net.forward` copies to the CPU and leaves "
        "autograd; keep the computation in torch",
        "nb.ipynb:cell 4:3:5: TS102 call the module (`m(x)`) instead of `m.forward(x)`: "
        "forward() skips the module's hooks",
        "nb.ipynb:cell 4:4:9: TS502 `torch.load` without `weights_only=True` can run arbitrary "
        "code from the file; pass it (register other saved classes with "
        "torch.serialization.add_safe_globals)",
        "Found 3 problems (1 fixable with --fix; 1 more with --unsafe-fixes).",
    ], text.stderr
    assert text.returncode == 1

    rows = json.loads(
        lint(
            "--isolated", "--extend-select", "TS101", "--format", "json", "nb.ipynb", cwd=tmp_path
        ).stdout
    )
    assert [(r["cell"], r["line"], r["column"], r["code"]) for r in rows] == [
        (2, 6, 16, "TS101"),
        (4, 3, 5, "TS102"),
        (4, 4, 9, "TS502"),
    ]
    edit = rows[1]["fix"]["edits"][0]  # offsets within the cell's own source
    assert "".join(CELLS[4]["source"])[edit["start"] : edit["end"]] == ".forward"

    sarif = json.loads(
        lint(
            "--isolated", "--extend-select", "TS101", "--format", "sarif", "nb.ipynb", cwd=tmp_path
        ).stdout
    )
    result = sarif["runs"][0]["results"][0]
    assert result["properties"] == {"cell": 2}
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 6

    stdin = subprocess.run(
        [sys.executable, "-m", "torchstyle", "lint", "--isolated", "-", "--stdin-filename", "x.ipynb"],
        input=raw, capture_output=True, text=True, cwd=tmp_path, timeout=HANG_TIMEOUT,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )  # fmt: skip
    lines = stdin.stdout.splitlines()
    assert any(ln.startswith("x.ipynb:cell 4:3:5: TS102") for ln in lines), stdin.stderr


def test_fix_and_diff_touch_only_changed_cells(tmp_path: Path) -> None:
    cells = [
        cell(["import torch\n", "m = torch.nn.Linear(2, 2)\n"]),
        cell("y = m.forward(1)", [OUTPUT]),  # a string source, no trailing newline
        cell(["ünïcode = 'ok'\n", "z = m.forward(2)\n"]),
        cell([]),
    ]
    for style in ({}, {"indent": 2}, {"indent": None, "ensure_ascii": True}):
        raw = notebook_json(cells, **style)
        if style.get("indent") is None:
            raw = raw.rstrip("\n")  # no trailing newline either
        path = tmp_path / "nb.ipynb"
        path.write_text(raw, encoding="utf-8")
        diff = lint("--isolated", "--diff", "nb.ipynb", cwd=tmp_path)
        assert diff.returncode == 1 and path.read_text(encoding="utf-8") == raw
        changed = [line for line in diff.stdout.splitlines() if line[:1] in "+-"]
        # two headers, then the two changed cells' lines out and in (one line: all of it)
        assert len(changed) == (6 if style.get("indent", 1) else 4), diff.stdout
        fixed = lint("--isolated", "--fix", "nb.ipynb", cwd=tmp_path)
        assert "Fixed 2 problems" in fixed.stdout, fixed.stdout
        new = path.read_text(encoding="utf-8")
        expected = raw.replace("m.forward(1)", "m(1)").replace("m.forward(2)", "m(2)")
        assert new == expected, style  # byte for byte: outputs, metadata, indentation, ends
        assert json.loads(new)["cells"][1]["source"] == "y = m(1)"


def test_configuration_excludes_and_ignores_notebooks(tmp_path: Path) -> None:
    (tmp_path / "nb.ipynb").write_text(notebook_json(CELLS), encoding="utf-8")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.torchstyle.lint]\nexclude = ["*.ipynb"]\n', encoding="utf-8")
    assert lint(".", cwd=tmp_path).stdout == "All checks passed!\n"
    pyproject.write_text(
        '[tool.torchstyle.lint.per-file-ignores]\n"*.ipynb" = ["TS1"]\n', encoding="utf-8"
    )
    found = lint(".", cwd=tmp_path).stdout
    assert "TS502" in found and "TS1" not in found


def test_unlintable_names_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n", encoding="utf-8")
    (tmp_path / "bad.ipynb").write_text('{"cells": [', encoding="utf-8")
    (tmp_path / "odd.ipynb").write_text('{"nbformat": 4}', encoding="utf-8")
    text = lint("notes.txt", cwd=tmp_path)
    assert (text.returncode, text.stdout) == (2, "")
    assert text.stderr == (
        "torchstyle lint: error: notes.txt: not a Python file or notebook; torchstyle lint "
        "reads .py, .ipynb, .pyi, .pyw files and scripts without a suffix\n"
    )
    bad = lint("bad.ipynb", "odd.ipynb", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[:2] == [
        "bad.ipynb:1:1: TS001 cannot read the notebook: invalid notebook JSON: Expecting value: "
        "line 1 column 12 (char 11)",
        "odd.ipynb:1:1: TS001 cannot read the notebook: not a Jupyter notebook: no `cells` list",
    ]


def test_split_back_refuses_what_it_cannot_place() -> None:
    book = notebook.parse(notebook_json([cell(["%time f()\n", "x = 1\n"]), cell("y = 2\n")]))
    assert book.source == (
        "# torchstyle: cell 1\npass  # torchstyle: masked 0\nx = 1\n# torchstyle: cell 2\ny = 2\n"
    )
    assert book.with_source(book.source) == book.raw
    assert book.with_source(book.source.replace("# torchstyle: cell 2\n", "")) is None
    assert book.with_source(book.source.replace("pass  # torchstyle: masked 0\n", "")) is None


def test_clean_run_says_so_and_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("x = 1\n", encoding="utf-8")
    assert lint("ok.py", "--isolated", cwd=tmp_path).stdout == "All checks passed!\n"
    for i in range(40):
        (tmp_path / f"f{i:02}.py").write_text("import torch\nx = torch.load('a')\n" * 50)
    piped = subprocess.run(
        f"{sys.executable} -m torchstyle lint --isolated --no-cache . | head -1",
        shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=HANG_TIMEOUT,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert piped.stdout.startswith("f00.py:2:5: TS502") and piped.stdout.count("\n") == 1
    assert piped.stderr == ""


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(alphabet="x=(%!?\n é#", max_size=30), max_size=5),
    st.booleans(),
    st.sampled_from([1, 2, None]),
)
def test_unchanged_cells_round_trip_byte_for_byte(
    sources: list[str], as_list: bool, indent: int | None
) -> None:
    cells = [cell(s.splitlines(keepends=True) if as_list else s) for s in sources]
    raw = notebook_json(cells, indent=indent)
    book = notebook.parse(raw)
    assert book.with_source(book.source) == raw
    assert len(book.cells) == len(sources)
    for number, text in enumerate(sources, start=1):
        assert book.cells[number - 1].text == text and book.cells[number - 1].number == number
