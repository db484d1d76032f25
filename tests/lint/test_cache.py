"""The results cache (``.torchstyle_cache``) and the fast path that answers from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import HANG_TIMEOUT
from tests.lint.test_cli import REPO, lint
from torchstyle.lint import fast, files

BAD = "import torch\n\n\ndef run(model, x):\n    return model.forward(x)\n"


def entries(root: Path) -> list[str]:
    folder = root / ".torchstyle_cache"
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and p.name != ".gitignore")


def test_second_run_is_served_from_the_cache_and_never_stale(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(BAD, encoding="utf-8")
    (tmp_path / "b.py").write_text("x = 1\n", encoding="utf-8")
    first = lint(".", cwd=tmp_path)
    assert first.returncode == 1 and "a.py:5:12: TS102" in first.stdout
    assert len(entries(tmp_path)) == 2
    assert (tmp_path / ".torchstyle_cache" / ".gitignore").read_text().endswith("*\n")
    second = lint(".", cwd=tmp_path)
    assert (second.returncode, second.stdout) == (1, first.stdout)

    # the fast path (files named, no flags) answers without loading a rule or argparse
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    traced = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "torchstyle", "lint", "a.py", "b.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_TIMEOUT,
    )  # fmt: skip
    assert traced.stdout == first.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in traced.stderr.splitlines()}
    assert "torchstyle.lint.fast" in imported
    assert not imported & {"argparse", "torchstyle.lint.checker", "torchstyle.lint.rules"}

    # a changed file, a changed configuration or other flags are checked again
    (tmp_path / "b.py").write_text("import torch\ntorch.load('x.pt')\n", encoding="utf-8")
    assert "b.py:2:1: TS502" in lint("b.py", cwd=tmp_path).stdout
    (tmp_path / "pyproject.toml").write_text(
        '[tool.torchstyle.lint]\nignore = ["TS102"]\n', encoding="utf-8"
    )
    assert "TS102" not in lint("a.py", cwd=tmp_path).stdout
    assert "TS102" in lint("a.py", "--isolated", cwd=tmp_path).stdout

    # a damaged entry is checked again, not trusted
    for name in entries(tmp_path):
        next((tmp_path / ".torchstyle_cache").rglob(name)).write_text("{not json")
    assert lint("a.py", "--isolated", cwd=tmp_path).stdout == first.stdout.replace(
        "./", ""
    ).replace("All checks passed!\n", "")


def test_no_cache_and_fixes_neither_read_nor_write_it(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(BAD, encoding="utf-8")
    assert lint("--no-cache", "a.py", cwd=tmp_path).returncode == 1
    assert lint("--diff", "a.py", cwd=tmp_path).returncode == 1
    assert not (tmp_path / ".torchstyle_cache").exists()
    lint("a.py", cwd=tmp_path)
    assert lint("--fix", "a.py", cwd=tmp_path).stdout == "Fixed 1 problem.\n"
    assert lint("a.py", cwd=tmp_path).stdout == "All checks passed!\n"


def test_parallel_runs_share_the_cache_safely(tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / f"f{i:02}.py").write_text(
            BAD.replace("forward(x)", f"forward(x + {i})"), encoding="utf-8"
        )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torchstyle", "lint", "-j", "1", "."]
    runs = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=HANG_TIMEOUT)[0] for run in runs]
    assert outputs[0].count("TS102") == 20 and outputs[1:] == outputs[:-1]
    assert len(entries(tmp_path)) == 20  # one entry per file, no temporary file left behind
    assert lint(".", cwd=tmp_path).stdout == outputs[0]


def test_fast_path_suffixes_match_the_walk() -> None:
    assert fast.SUFFIXES == files.SUFFIXES


def test_a_cache_that_cannot_be_written_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    import errno
    import json

    from torchstyle.lint import cache

    (tmp_path / "a.py").write_text(BAD, encoding="utf-8")
    (tmp_path / ".torchstyle_cache").write_text("a file where the folder would go")
    blocked = lint("a.py", cwd=tmp_path)
    assert blocked.returncode == 1 and "a.py:5:12: TS102" in blocked.stdout, blocked.stderr
    assert blocked.stderr == ""

    # a full disk half-way through an entry: the entry is skipped, its temporary file removed
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    store = cache.Cache(str(tmp_path / "other"), "default")
    monkeypatch.setattr(json, "dump", disk_full)
    store.put("ab" + "0" * 62, [])
    assert [p.name for p in (tmp_path / "other" / ".torchstyle_cache").rglob("*")] == [
        ".gitignore",
        "ab",
    ]


def test_a_change_in_another_project_file_is_never_served_stale(tmp_path: Path) -> None:
    from tests.lint.test_semantic import OPTS, TRAIN

    (tmp_path / "pyproject.toml").write_text("[tool.torchstyle.lint]\n", encoding="utf-8")
    (tmp_path / "opts.py").write_text(OPTS, encoding="utf-8")
    (tmp_path / "train.py").write_text(TRAIN.format(module="opts", name="parse_args"))
    assert "TS401" not in lint("train.py", cwd=tmp_path).stdout
    # train.py is unchanged, but the function it imports no longer parses flags
    (tmp_path / "opts.py").write_text("def parse_args():\n    return None\n", encoding="utf-8")
    assert "train.py:8:56: TS401" in lint("train.py", cwd=tmp_path).stdout
