"""Shared test set-up: one intra-op thread, and a helper that runs the real CLI.

On a 2-core machine with two pytest workers, torch's default of one OpenMP thread per core
oversubscribes the cores, and spinning OpenMP threads then made small steps ~70x slower.
Subprocesses inherit the environment variable.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from tests.cli_runner import run_python, startup_env

torch.set_num_threads(1)

# Hypothesis judges an example by the time it takes (a 200 ms deadline, a "too slow" check on
# generating data) unless told otherwise; on a busy machine both fail tests that are right.
# Every property test here runs under this profile; a test's own @settings only adds to it.
settings.register_profile("load-safe", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("load-safe")

REPO = Path(__file__).resolve().parent.parent

# A guard against a hung subprocess, not a speed check: on a 2-core machine shared with other
# work a small training run can take many times its idle time, and must still pass.
HANG_TIMEOUT = 1800.0


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = HANG_TIMEOUT, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m torchstyle ARGS`` in its own process; returns the CompletedProcess.

    The process is forked from a server that has already imported torch (see
    ``tests/cli_runner.py``), which saves each run the torch import.
    """
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return run_python(["-m", "torchstyle", *args], cwd=cwd, env=full_env, timeout=timeout)


@pytest.fixture(autouse=True)
def _keep_startup_env():
    """Puts back the start-up settings (``PYTHON*``, ``OMP_*``, ...) a test changed in os.environ.

    Importing scikit-learn, for one, sets ``KMP_*`` variables. Left changed, every later CLI run
    in the worker would differ from the forking server's start and need a fresh interpreter.
    """
    before = startup_env(os.environ)
    yield
    for key in startup_env(os.environ).keys() - before.keys():
        del os.environ[key]
    os.environ.update(before)


@pytest.fixture
def cli():
    """The :func:`run_cli` helper as a fixture."""
    return run_cli
