"""A reader that goes away (`torchstyle lint - | head -3`) ends any command quietly: no
BrokenPipeError traceback, exit code 141 as for a writer killed by SIGPIPE."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import HANG_TIMEOUT, REPO

SOURCE = b"import torch\nx = torch.load('a')\n" * 2000  # findings enough to fill a pipe


def _closed_reader(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchstyle", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    proc.stdout.close()  # the reader is gone before the first line
    _, err = proc.communicate(stdin, timeout=HANG_TIMEOUT)
    return subprocess.CompletedProcess(args, proc.returncode, "", err.decode())


@pytest.mark.parametrize(
    "args",
    [("lint", "-"), ("runs", "."), pytest.param(("models",), marks=pytest.mark.slow)],
    ids=lambda a: " ".join(a),
)
def test_a_closed_pipe_ends_quietly(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = _closed_reader(*args, stdin=SOURCE)
    # 141 (128 + SIGPIPE) as a shell reports it; the linter, whose findings were already
    # decided, keeps its own exit code (1: findings), as ruff does
    assert done.returncode == (1 if args[0] == "lint" else 141), done.stderr
    assert done.stderr == "", done.stderr
