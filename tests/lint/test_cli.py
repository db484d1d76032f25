"""``torchstyle lint`` end to end: real subprocesses for the main paths, in-process for the rest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import HANG_TIMEOUT
from torchstyle.cli import main

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<code>TS\d{3}) (?P<message>.+)$"
)

BAD = textwrap.dedent(
    """\
    import torch

    def run(model, x):
        return model.forward(x)
    """
)
CLEAN = textwrap.dedent(
    """\
    import torch

    def run(model, x):
        return model(x)
    """
)


def lint(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m torchstyle lint ARGS`` in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "torchstyle", "lint", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
    )


def write(root: Path, files: dict[str, str]) -> None:
    """Writes ``files`` (relative path -> text) under ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


# -- subprocess: the paths pre-commit and CI take ---------------------------------------------


def test_exit_codes_text_output_and_syntax_errors(tmp_path: Path) -> None:
    write(tmp_path, {"clean.py": CLEAN, "bad.py": BAD, "broken.py": "def f(:\n", "zz.py": BAD})
    clean = lint("clean.py", "--isolated", cwd=tmp_path)
    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "All checks passed!\n", "")

    found = lint("--isolated", cwd=tmp_path)  # no paths: the current folder
    assert found.returncode == 1, found.stderr
    lines = [m.groupdict() for m in map(LINE.match, found.stdout.splitlines()) if m]
    assert [(d["path"], d["line"], d["col"], d["code"]) for d in lines] == [
        ("bad.py", "4", "12", "TS102"),
        ("broken.py", "1", "7", "TS001"),
        ("zz.py", "4", "12", "TS102"),  # the run went on after the syntax error
    ]
    assert found.stdout.splitlines()[-1].startswith("Found 3 problems")

    usage = lint("--select", "TS999", "bad.py", cwd=tmp_path)
    assert usage.returncode == 2 and usage.stdout == ""
    assert usage.stderr.startswith("torchstyle lint: error:") and "TS999" in usage.stderr


def test_json_and_github_formats(tmp_path: Path) -> None:
    write(tmp_path, {"bad.py": BAD})
    result = lint("--format", "json", "--isolated", "bad.py", cwd=tmp_path)
    assert result.returncode == 1
    (finding,) = json.loads(result.stdout)
    assert finding["code"] == "TS102" and finding["name"] == "forward-call"
    assert (finding["path"], finding["line"], finding["column"]) == ("bad.py", 4, 12)
    assert finding["fix"]["applicability"] == "safe"
    github = lint("--format", "github", "--isolated", "bad.py", cwd=tmp_path)
    assert github.returncode == 1
    assert github.stdout.startswith("::error file=bad.py,line=4,col=12,endLine=4,endColumn=28,")


def test_config_noqa_excludes_and_ignores_from_pyproject(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": """\
                [tool.torchstyle.lint]
                extend-select = ["TS601"]
                ignore = ["TS502"]
                exclude = ["generated/"]

                [tool.torchstyle.lint.per-file-ignores]
                "scripts/*.py" = ["TS102"]
            """,
            "pkg/model.py": """\
                import torch

                def run(model, x, path):
                    state = torch.load(path)
                    a = model.forward(x)  # noqa: TS102
                    b = model.forward(x)  # noqa: E501
                    c = model.forward(x)  # noqa
                    badName = 1
                    return a, b, c, state, badName
            """,
            "scripts/tool.py": BAD,
            "generated/out.py": BAD,
            "ignored_by_git/x.py": BAD,
            ".gitignore": "ignored_by_git/\n",
            "venv_here/pyvenv.cfg": "home = /usr\n",
            "venv_here/lib/site.py": BAD,
        },
    )
    result = lint(cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    codes = [
        (m["path"], m["line"], m["code"]) for m in map(LINE.match, result.stdout.splitlines()) if m
    ]
    assert codes == [("pkg/model.py", "6", "TS102"), ("pkg/model.py", "8", "TS601")]


def test_fix_rewrites_the_file(tmp_path: Path) -> None:
    write(tmp_path, {"bad.py": BAD})
    result = lint("--fix", "--isolated", "bad.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "bad.py").read_text() == CLEAN
    assert result.stdout == "Fixed 1 problem.\n"


# -- in-process: the same CLI entry point, faster ---------------------------------------------


def run_cli(*args: str) -> int:
    """``torchstyle lint ARGS`` through :func:`torchstyle.cli.main`."""
    return main(["lint", *args])


def test_github_annotations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, {"bad.py": BAD})
    monkeypatch.chdir(tmp_path)
    assert run_cli("--format", "github", "--isolated", "bad.py") == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "::error file=bad.py,line=4,col=12,endLine=4,endColumn=28,title=torchstyle (TS102)::"
        "bad.py:4:12: TS102 call the module (`m(x)`) instead of `m.forward(x)`: forward() skips "
        "the module's hooks"
    ]


def test_statistics_and_exit_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, {"a.py": BAD, "b.py": BAD})
    monkeypatch.chdir(tmp_path)
    assert run_cli("--statistics", "--isolated") == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["2", "TS102", "[*]", "forward-call"]
    assert run_cli("--exit-zero", "--isolated") == 0
    capsys.readouterr()
    assert run_cli("--statistics", "--format", "json", "--isolated") == 1
    assert json.loads(capsys.readouterr().out) == [
        {"code": "TS102", "name": "forward-call", "count": 2, "fixable": True}
    ]


def test_explain(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--explain", "ts102") == 0
    out = capsys.readouterr().out
    assert out.startswith("TS102 (forward-call)")
    for section in ("What:", "Why:", "Example:", "Use instead:", "Fix:"):
        assert section in out
    assert run_cli("--explain", "forward-call") == 0
    capsys.readouterr()
    assert run_cli("--explain", "TS999") == 2
    assert "unknown rule" in capsys.readouterr().err


def test_diff_and_unsafe_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = "import torch\nstate = torch.load('x.pt')\n"
    write(tmp_path, {"load.py": source})
    monkeypatch.chdir(tmp_path)
    assert run_cli("--fix", "--isolated", "load.py") == 1  # the fix is unsafe: not applied
    assert (tmp_path / "load.py").read_text() == source
    assert "1 more with --unsafe-fixes" in capsys.readouterr().out
    assert run_cli("--unsafe-fixes", "--diff", "--isolated", "load.py") == 1
    diff = capsys.readouterr().out
    assert "+state = torch.load('x.pt', weights_only=True)" in diff
    assert (tmp_path / "load.py").read_text() == source
    assert run_cli("--unsafe-fixes", "--isolated", "load.py") == 0
    assert "weights_only=True" in (tmp_path / "load.py").read_text()


def test_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli("missing.py") == 2
    assert "missing.py: no such file" in capsys.readouterr().err
    write(tmp_path, {"pyproject.toml": "[tool.torchstyle.lint]\nselct = ['TS1']\n", "a.py": CLEAN})
    assert run_cli("a.py") == 2
    assert "unknown key 'selct'" in capsys.readouterr().err
    write(tmp_path, {"pyproject.toml": "[tool.torchstyle.lint]\nignore = ['XX1']\n"})
    assert run_cli("a.py") == 2
    assert "XX1" in capsys.readouterr().err
    assert run_cli("--config", "nope.toml", "a.py") == 2
    with pytest.raises(SystemExit) as excinfo:
        run_cli("--format", "xml", "a.py")
    assert excinfo.value.code == 2


def test_select_extend_select_and_force_exclude(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": '[tool.torchstyle.lint]\nexclude = ["skip_me.py"]\n',
            "skip_me.py": BAD,
            "names.py": "badName = 1\n",
        },
    )
    monkeypatch.chdir(tmp_path)
    assert run_cli("names.py") == 0  # TS601 is off by default
    assert run_cli("--extend-select", "TS6", "names.py") == 1
    capsys.readouterr()
    assert run_cli("--select", "TS1,TS2", "names.py") == 0
    assert run_cli("skip_me.py") == 1  # named on the command line: checked
    capsys.readouterr()
    assert run_cli("--force-exclude", "skip_me.py") == 0  # as pre-commit passes it
    assert run_cli() == 0  # the folder walk applies the exclude
    assert run_cli("--exclude", "names.py", "--extend-select", "TS601") == 0


def test_pre_commit_hook_definition() -> None:
    text = (REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    assert "id: torchstyle-lint" in text
    assert "entry: torchstyle/lint/pre_commit.py --force-exclude" in text
    assert "language: script" in text
    assert "types_or: [python, jupyter]" in text
