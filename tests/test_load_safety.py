"""The suite holds on a busy machine: no verdict rests on how long something took.

Load stretches every duration, so a test may wait for something (with a hang guard of
``HANG_TIMEOUT``) but never assert that it was quick. This scans every test module for the
ways a wall-clock verdict slips in: a short ``timeout=``, a short polling deadline, an
assertion that reads a clock, a Hypothesis deadline.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from tests.conftest import HANG_TIMEOUT

TESTS = Path(__file__).resolve().parent
CLOCKS = {"time", "perf_counter", "monotonic", "perf_counter_ns", "monotonic_ns"}


def _test_modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "fixtures" not in p.relative_to(TESTS).parts)


def _number(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    return None


def _reads_clock(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in CLOCKS
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "time"
        for n in ast.walk(node)
    )


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def wall_clock_verdicts(source: str) -> list[tuple[int, str]]:
    """Returns ``(line, why)`` for every place in ``source`` whose verdict rests on a duration."""
    found = []
    tree = ast.parse(source)
    constants = {  # module-level NAME = number, so `timeout=WAIT` is judged by WAIT's value
        t.id: value
        for node in tree.body
        if isinstance(node, ast.Assign) and (value := _number(node.value)) is not None
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("timeout", "deadline"):
            value = _number(node.value)
            if isinstance(node.value, ast.Name):
                value = constants.get(node.value.id)
            if node.arg == "deadline" and not (
                isinstance(node.value, ast.Constant) and node.value.value is None
            ):
                found.append((node.value.lineno, "a Hypothesis deadline other than None"))
            elif value is not None and value < HANG_TIMEOUT:
                found.append((node.value.lineno, f"timeout={value:g}: use HANG_TIMEOUT"))
        elif (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and "TIMEOUT" in t.id for t in node.targets)
            and (value := _number(node.value)) is not None
            and value < HANG_TIMEOUT
        ):
            found.append((node.lineno, f"a timeout constant of {value:g} s: use HANG_TIMEOUT"))
        # now + N is a deadline (now - N, a moment in the past, is not)
        elif (
            isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and _reads_clock(node.left)
        ):
            value = _number(node.right)
            if value is not None and value < HANG_TIMEOUT:
                found.append((node.lineno, f"a deadline of {value:g} s: use HANG_TIMEOUT"))
        # `time.monotonic() < deadline` guards a wait against a hang; anything else that reads
        # a clock in an assertion is a speed check.
        elif (
            isinstance(node, ast.Assert)
            and _reads_clock(node.test)
            and "deadline" not in _names(node.test)
        ):
            found.append((node.lineno, "an assertion reads the clock"))
    return found


@pytest.mark.parametrize("module", _test_modules(), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_verdict_rests_on_wall_clock_time(module):
    found = wall_clock_verdicts(module.read_text(encoding="utf-8"))
    assert not found, "\n".join(f"{module.name}:{line}: {why}" for line, why in found)


@pytest.mark.parametrize(
    "source",
    [
        "subprocess.run(cmd, timeout=60)",
        "deadline = time.monotonic() + 30",
        "t0 = time.perf_counter()\nwork()\nassert time.perf_counter() - t0 < 1.0",
        "@settings(deadline=200)\ndef test(): pass",
        "TIMEOUT = 300",
        "WAIT = 120.0\nqueue.get(timeout=WAIT)",
    ],
    ids=[
        "short-timeout",
        "short-deadline",
        "timed-assert",
        "hypothesis-deadline",
        "constant",
        "named-constant",
    ],
)
def test_the_scan_finds_each_kind_of_wall_clock_verdict(source):
    assert wall_clock_verdicts(source)


def test_the_scan_passes_a_wait_with_a_hang_guard():
    source = (
        "deadline = time.monotonic() + HANG_TIMEOUT\n"
        "while not done():\n"
        "    assert time.monotonic() < deadline, 'never done'\n"
        "    time.sleep(0.1)\n"
        "subprocess.run(cmd, timeout=HANG_TIMEOUT)\n"
    )
    assert wall_clock_verdicts(source) == []


def test_the_scan_passes_a_moment_in_the_past():
    assert wall_clock_verdicts("set_heartbeat(time.time() - 60)") == []


def test_property_tests_have_no_deadline():
    assert settings().deadline is None


def _under_load(*args: str) -> subprocess.CompletedProcess[str]:
    script = TESTS / "under_load.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=HANG_TIMEOUT
    )


def _burner_pids(stderr: str) -> list[int]:
    line = next(ln for ln in stderr.splitlines() if ln.startswith("under load:"))
    return [int(p) for p in line.split("(pids ")[1].rstrip(")").split()]


def test_under_load_runs_the_command_k_times_and_stops_its_burners():
    code = "import os; print(os.getloadavg() is not None)"
    done = _under_load("--burners", "2", "--runs", "2", "--", sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
    assert [ln.split(":")[0] for ln in done.stderr.splitlines()[1:]] == ["run 1/2", "run 2/2"]
    for pid in _burner_pids(done.stderr):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_under_load_stops_at_the_first_failing_run_with_its_exit_code():
    done = _under_load("--burners", "1", "--runs", "3", "--", sys.executable, "-c", "exit(3)")
    assert done.returncode == 3
    assert "run 1/3: exit 3" in done.stderr and "run 2/3" not in done.stderr
