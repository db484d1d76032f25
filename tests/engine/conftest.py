"""Fixtures for engine tests: one real classifier run on digits, shared by the module tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import run_cli

DEMO_ARGS = ("train", "--model", "classifier", "--data", "digits", "--epochs", "8")


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a metrics.jsonl file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary_value(stdout: str, label: str) -> float:
    """Reads e.g. ``accuracy`` from the summary's ``test: accuracy 0.9917, loss 0.0261`` line."""
    m = re.search(rf"^test: .*\b{label} ([0-9.]+)", stdout, re.M)
    assert m, f"no test {label} in summary:\n{stdout}"
    return float(m.group(1))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The `make demo` training command, run once, logging every 10 steps."""
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    proc = run_cli(*DEMO_ARGS, "--run-dir", str(run_dir), "--log-every", "10", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return run_dir, proc
