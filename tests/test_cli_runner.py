"""The tests' forked CLI runs behave as fresh interpreters do: same output, status and setting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests import cli_runner
from tests.cli_runner import run_python
from tests.conftest import HANG_TIMEOUT

SHOW = (
    "import os, sys\n"
    "print(os.getcwd()); print(os.environ.get('TS_PROBE')); print(sys.argv)\n"
    "print(sys.path[0]); print(__name__)\n"
)


def _both(argv: list[str], cwd: Path, **env: str):
    # The server's own start-up settings: an earlier test in this worker may have left others.
    base = {**cli_runner._SERVER.env, **env}
    forked = run_python(argv, cwd=cwd, env=base, timeout=HANG_TIMEOUT)
    fresh_env = {**base, "TORCHSTYLE_TEST_FRESH_PROCESSES": "1"}
    fresh = run_python(argv, cwd=cwd, env=fresh_env, timeout=HANG_TIMEOUT)
    return forked, fresh


@pytest.mark.parametrize("form", ["-c", "script", "-m"])
def test_a_forked_run_sees_what_a_fresh_interpreter_sees(tmp_path: Path, form: str) -> None:
    (tmp_path / "probe.py").write_text(SHOW + "sys.stderr.write('to stderr\\n'); sys.exit(3)\n")
    argv = {
        "-c": ["-c", SHOW + "raise SystemExit(3)", "a b"],
        "script": [str(tmp_path / "probe.py"), "a b"],
        "-m": ["-m", "probe", "a b"],
    }[form]
    forked, fresh = _both(argv, tmp_path, TS_PROBE="given")
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )
    assert forked.returncode == 3 and "given" in forked.stdout and "a b" in forked.stdout


def test_an_uncaught_error_and_a_signal_end_the_process_as_they_would(tmp_path: Path) -> None:
    forked, fresh = _both(["-c", "raise ValueError('boom')"], tmp_path)
    assert forked.returncode == fresh.returncode == 1
    assert forked.stderr == fresh.stderr and "ValueError: boom" in forked.stderr
    killed, fresh_killed = _both(["-c", "import os; os.kill(os.getpid(), 9)"], tmp_path)
    assert killed.returncode == fresh_killed.returncode == -9


def test_runs_are_forked_from_the_torch_server_unless_fresh_is_asked(tmp_path: Path) -> None:
    code = ["-c", "import sys; print('torch' in sys.modules)"]
    forked, fresh = _both(code, tmp_path)
    assert forked.stdout.strip() == "True"  # torch was imported once, by the server
    assert fresh.stdout.strip() == "False"
    # A setting the interpreter reads only at start-up cannot be forked: a fresh one runs.
    env = {**cli_runner._SERVER.env, "PYTHONHASHSEED": "7"}
    changed = run_python(code, cwd=tmp_path, env=env, timeout=HANG_TIMEOUT)
    assert changed.stdout.strip() == "False"
    assert sys.executable in forked.args


ENDING = (
    "import atexit, sys, threading, time\n"
    "log = open('log.txt', 'w')\n"  # never closed: the interpreter's exit must still flush it
    "log.write('written before the end')\n"
    "atexit.register(lambda: print('atexit ran'))\n"
    "def late():\n"
    "    time.sleep(0.2)\n"
    "    print('thread finished')\n"
    "threading.Thread(target=late).start()\n"
    "sys.stdout.write('unflushed ')\n"
)


@pytest.mark.parametrize("end", ["", "sys.exit('a message')", "sys.exit(300)", "sys.exit()"])
def test_a_forked_run_ends_as_the_interpreter_ends_a_program(tmp_path: Path, end: str) -> None:
    results = []
    for fresh in ("0", "1"):
        folder = tmp_path / fresh
        folder.mkdir()
        env = {**cli_runner._SERVER.env, "TORCHSTYLE_TEST_FRESH_PROCESSES": fresh}
        done = run_python(["-c", ENDING + end], cwd=folder, env=env, timeout=HANG_TIMEOUT)
        log = (folder / "log.txt").read_text()
        results.append((done.returncode, done.stdout, done.stderr, log))
    assert results[0] == results[1]
    assert "thread finished" in results[0][1] and "atexit ran" in results[0][1]
    assert results[0][3] == "written before the end"
