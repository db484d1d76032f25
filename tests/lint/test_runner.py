"""The runner's parts: noqa, files and excludes, configuration, selection, decoding, positions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torchstyle.errors import UserError
from torchstyle.lint import files, noqa, registry
from torchstyle.lint.base import Rule, on
from torchstyle.lint.config import find_pyproject, load_config
from torchstyle.lint.runner import Linter, decode_source, lint_source


def test_noqa_forms() -> None:
    source = "a  # noqa\nb  # noqa: TS102, TS2\nc  # NOQA:TS1\nd  # noqa: E501\ne\n"
    sup = noqa.scan(source)
    assert sup is not None
    assert sup.silences(1, "TS502")
    assert sup.silences(2, "TS102") and sup.silences(2, "TS203") and not sup.silences(2, "TS101")
    assert sup.silences(3, "TS103")
    assert not sup.silences(4, "TS102")
    assert not sup.silences(5, "TS102")
    assert noqa.scan("x = 1\n") is None


def test_file_level_noqa() -> None:
    source = "import torch\n# torchstyle: noqa: TS502\nx = torch.load('a')\ny = model.forward(x)\n"
    assert [f.code for f in lint_source(source)] == ["TS102"]
    assert lint_source("# torchstyle: noqa\ny = model.forward(x)\n") == []


def test_gitignore_patterns(tmp_path: Path) -> None:
    base = str(tmp_path)
    pats = files.compile_patterns(
        ["build/", "*.pyc", "/top.py", "docs/**/gen", "!keep.pyc", "# c", ""], base
    )
    assert len(pats) == 5

    def excluded(rel: str, is_dir: bool = False) -> bool:
        return files.is_excluded(os.path.join(base, rel), is_dir, pats)

    assert excluded("build", is_dir=True) and excluded("a/build", is_dir=True)
    assert not excluded("build")  # a file called build: the pattern is for folders
    assert excluded("x.pyc") and excluded("a/b/x.pyc") and not excluded("keep.pyc")
    assert excluded("top.py") and not excluded("a/top.py")
    assert excluded("docs/gen", is_dir=True) and excluded("docs/a/b/gen", is_dir=True)


def test_walk_skips_virtualenvs_caches_and_gitignored(tmp_path: Path) -> None:
    for rel in ["a.py", "pkg/b.py", "pkg/c.txt", ".venv/x.py", "env2/pyvenv.cfg", "env2/lib/y.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    for rel in ["__pycache__/z.py", "pkg/gen/g.py", "pkg/keep.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "pkg/.gitignore").write_text("gen/\n")
    patterns = files.compile_patterns(files.DEFAULT_EXCLUDES, os.sep)
    found = [os.path.relpath(p, tmp_path) for p in files.iter_python_files(str(tmp_path), patterns)]
    assert found == ["a.py", os.path.join("pkg", "b.py"), os.path.join("pkg", "keep.py")]
    everything = files.iter_python_files(str(tmp_path), patterns, respect_gitignore=False)
    assert os.path.join("pkg", "gen", "g.py") in [os.path.relpath(p, tmp_path) for p in everything]


def test_config_loading(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        "[tool.torchstyle.lint]\n"
        'select = "TS1, TS2"\n'
        'extend_select = ["TS601"]\n'
        'ignore = ["TS101"]\n'
        "respect-gitignore = false\n"
        '[tool.torchstyle.lint.per-file-ignores]\n"tests/*" = ["TS2"]\n'
    )
    path = find_pyproject(str(tmp_path / "sub"))
    assert path == str(tmp_path / "pyproject.toml")
    config = load_config(path)
    assert config.select == ["TS1", "TS2"] and config.extend_select == ["TS601"]
    assert config.ignore == ["TS101"] and not config.respect_gitignore
    assert config.per_file_ignores == {"tests/*": ["TS2"]}
    assert config.root == str(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.torchstyle.lint]\nrespect-gitignore = 1\n")
    with pytest.raises(UserError, match="true or false"):
        load_config(path)
    (tmp_path / "pyproject.toml").write_text("[tool.torchstyle.lint\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(path)


def test_find_pyproject_skips_files_without_the_section(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.torchstyle.lint]\n")
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert find_pyproject(str(tmp_path / "inner")) == str(tmp_path / "pyproject.toml")


def test_selection() -> None:
    defaults = registry.resolve_selection(None)
    assert "TS102" in defaults and "TS601" not in defaults and "TS602" not in defaults
    assert registry.expand(["ts10"], option="select") == {"TS101", "TS102", "TS103", "TS104"}
    assert registry.resolve_selection(["ALL"], ignore=["TS6", "TS0"]) == {
        c for c in registry.all_rules() if c[2] not in "06"
    }
    assert registry.resolve_selection(None, ["TS601"], ["TS1"]) == (defaults | {"TS601"}) - {
        "TS101",
        "TS102",
        "TS103",
        "TS104",
    }
    with pytest.raises(UserError, match="matches no rule"):
        registry.expand(["TS9"], option="ignore")
    assert registry.split_codes("TS1, TS2 TS3") == ["TS1", "TS2", "TS3"]


def test_decode_source() -> None:
    assert decode_source(b"\xef\xbb\xbfx = 1\n").bom
    latin = decode_source(b"# -*- coding: latin-1 -*-\nname = '\xe9'\n")
    assert latin.encoding == "iso-8859-1" and "\u00e9" in latin.text
    assert latin.encode(latin.text) == b"# -*- coding: latin-1 -*-\nname = '\xe9'\n"
    with pytest.raises(UnicodeDecodeError):
        decode_source(b"x = '\xff'\n")


def test_columns_count_characters_not_bytes() -> None:
    source = "label = 'é'; out = model.forward(x)\n"
    (finding,) = lint_source(source)
    assert finding.col == source.index("model") + 1
    fixed, _, count = Linter(["TS102"]).fix(source)
    assert count == 1 and fixed == "label = 'é'; out = model(x)\n"


def test_crlf_and_lone_cr_line_endings() -> None:
    source = "import torch\r\nx = 1\ry = model.forward(x)  # noqa: TS101\r\nz = model.forward(x)  # noqa\n"
    (finding,) = lint_source(source)
    assert (finding.line, finding.col) == (3, 5)
    fixed, _, _ = Linter(["TS102"]).fix(source)
    assert fixed == source.replace("y = model.forward(x)", "y = model(x)")


def test_unparsable_sources_are_findings_not_crashes() -> None:
    assert [f.code for f in lint_source("def f(:\n")] == ["TS001"]
    assert [f.code for f in lint_source("x = 1\0\n")] == ["TS001"]
    deep = "x = " + "(" * 150 + "1" + ")" * 150 + "\n"
    assert {f.code for f in lint_source(deep)} <= {"TS001"}
    chain = "x = " + " + ".join(["a"] * 20000) + "\n"
    assert [f.code for f in lint_source(chain)] in ([], ["TS001"])


def test_a_failing_rule_is_reported_and_the_run_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(Rule):
        code = "TS102"

        @on(__import__("ast").Call)
        def boom(self, node: object) -> None:
            raise ValueError("boom")

    linter = Linter(["TS002", "TS102"])
    linter.rules[0] = Broken()
    linter.checker = type(linter.checker)(linter.rules)
    (finding,) = linter.lint("f(x)\n", "a.py")
    assert finding.code == "TS002" and "ValueError: boom" in finding.message
    assert linter.lint("x = 1\n", "b.py") == []


def test_fixes_never_produce_invalid_code() -> None:
    # Two fixes on one call; whatever happens, the result parses and keeps the other code.
    source = (
        "import torch\nfrom torch.autograd import Variable\nout = Variable(m.forward(x)).data\n"
    )
    fixed, remaining, count = Linter(registry.resolve_selection(["ALL"])).fix(source, unsafe=True)
    compile(fixed, "fixed.py", "exec")
    assert count >= 2 and "forward" not in fixed
    assert not [f for f in remaining if f.fix is not None]
