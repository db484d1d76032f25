"""Runs ``python ARGV`` for a test: forked from a server that has imported torch, or fresh.

:func:`run_python` behaves like ``subprocess.run([sys.executable, *argv], capture_output=True,
text=True)``: a separate process with the given working directory and environment, its exit
status (negative for a signal), its stdout and stderr as text, ``TimeoutExpired`` after the
timeout. The process is forked from ``tests/cli_zygote.py`` (one per pytest worker), which saves
each run the seconds of importing torch and torchvision; see that file for why that is the same
process a fresh interpreter would give.

A fresh interpreter is started instead when the fork cannot stand in for one: when the run
changes an environment variable that the interpreter or torch reads only while starting
(``PYTHON*``, thread-pool and library-path settings), when the server is already busy with
another run of the same test (two runs at once), or when ``TORCHSTYLE_TEST_FRESH_PROCESSES=1``
asks for fresh processes everywhere (``make test-fresh``).
"""

from __future__ import annotations

import atexit
import json
import locale
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_ZYGOTE = Path(__file__).resolve().parent / "cli_zygote.py"
# Read once while the interpreter, libgomp or torch start; a fork cannot change them afterwards.
_STARTUP_PREFIXES = ("PYTHON", "OMP_", "MKL_", "KMP_", "GOMP_", "LD_", "MALLOC_", "TORCH_", "CUDA")
_FRESH_FLAG = "TORCHSTYLE_TEST_FRESH_PROCESSES"


def startup_env(env: Mapping[str, str]) -> dict[str, str]:
    """The settings in ENV that the interpreter or torch read only while starting."""
    return {k: v for k, v in env.items() if k.startswith(_STARTUP_PREFIXES)}


class _Server:
    """One forking server per pytest worker, started on first use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[str] | None = None
        # The environment the tests start with (conftest sets the thread counts before this).
        self.env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.outdir = ""

    def start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.outdir = tempfile.mkdtemp(prefix="torchstyle-zygote-")
            self.proc = subprocess.Popen(
                [sys.executable, str(_ZYGOTE)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=self.env,
                cwd=REPO,
                text=True,
                bufsize=1,
            )
            atexit.register(self.stop)
        return self.proc

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait()
            shutil.rmtree(self.outdir, ignore_errors=True)

    def read(self, timeout: float | None) -> dict | None:
        """The server's next message, or None when it did not come within the timeout."""
        assert self.proc is not None and self.proc.stdout is not None
        if timeout is not None:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                return None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the CLI test server ended; see the worker's stderr")
        return json.loads(line)


_SERVER = _Server()


def _read_text(path: str) -> str:
    # As subprocess.run(text=True) decodes a pipe: locale encoding, universal newlines.
    with open(path, encoding=locale.getpreferredencoding(False)) as f:
        return f.read()


def _run_forked(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float | None
) -> subprocess.CompletedProcess[str]:
    proc = _SERVER.start()
    assert proc.stdin is not None
    out = tempfile.mkstemp(dir=_SERVER.outdir, suffix=".out")
    err = tempfile.mkstemp(dir=_SERVER.outdir, suffix=".err")
    for fd, _ in (out, err):
        os.close(fd)
    request = {"argv": list(argv), "cwd": str(cwd), "env": dict(env), "stdout": out[1]}
    request["stderr"] = err[1]
    proc.stdin.write(json.dumps(request) + "\n")
    proc.stdin.flush()
    started = _SERVER.read(None)
    assert started is not None
    ended = _SERVER.read(timeout)
    if ended is None:
        os.kill(started["pid"], signal.SIGKILL)
        _SERVER.read(None)
    try:
        stdout, stderr = _read_text(out[1]), _read_text(err[1])
    finally:
        os.unlink(out[1])
        os.unlink(err[1])
    args = [sys.executable, *argv]
    if ended is None:
        raise subprocess.TimeoutExpired(args, timeout or 0.0, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(args, ended["returncode"], stdout, stderr)


def run_python(
    argv: Sequence[str],
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs ``python ARGV`` in its own process and captures its output as text.

    Args:
        argv: What follows ``python`` on the command line: ``["-m", "torchstyle", ...]`` or a
            script and its arguments.
        cwd: The working directory (default: this process's).
        env: The whole environment of the process (default: this process's).
        timeout: Seconds before the process is killed and ``TimeoutExpired`` raised.

    Returns:
        The finished process, as ``subprocess.run`` returns it.
    """
    env = dict(os.environ if env is None else env)
    workdir = Path(cwd if cwd is not None else os.getcwd()).resolve()
    fresh = env.get(_FRESH_FLAG) == "1" or os.environ.get(_FRESH_FLAG) == "1"
    same_start = startup_env(env) == startup_env(_SERVER.env)
    if not fresh and same_start and _SERVER.lock.acquire(False):
        try:
            return _run_forked(argv, workdir, env, timeout)
        finally:
            _SERVER.lock.release()
    return subprocess.run(
        [sys.executable, *argv],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
