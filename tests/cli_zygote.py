"""A process that has imported torch once and forks a fresh child for each CLI run.

Each ``python -m torchstyle train ...`` that a test starts spends most of its time importing
torch and torchvision (about 3 s of CPU each time, several times that on a busy machine). This
server pays that once per pytest worker: for each request it forks, and the child runs
``python -m torchstyle ARGS`` (or a script, such as a generated project's ``train.py``) exactly as the interpreter would (``runpy``, ``__main__``, its own
working directory, environment, argv, stdin from /dev/null, stdout and stderr to files, atexit
handlers and exit status), so the run under test is still a separate process with its own
memory, signals and exit code. Only third-party modules are imported here, never torchstyle: the
child imports the code under test itself.

Protocol, one JSON object per line: the client writes
``{"argv": [...], "cwd": "...", "env": {...}, "stdout": PATH, "stderr": PATH}``, where ``argv`` is
what would follow ``python`` on a command line (``["-m", "torchstyle", "train", ...]`` or
``["train.py", "--epochs", "1"]`` or ``["-c", CODE]``); the server
answers ``{"pid": N}`` when the child starts and ``{"returncode": RC}`` when it ends (negative for
a signal, as ``subprocess`` reports it). End of input ends the server.

Forking is safe because nothing here starts a thread: importing torch starts none, and no torch
operation runs in this process (its thread pools start on first use, in each child).

Two things keep each child cheap. The server freezes what it imported (``gc.freeze``), so a
child's garbage collections never walk, and copy, torch's objects. And a child ends as the
interpreter ends a program, minus the last step: it waits for its non-daemon threads, runs its
atexit handlers, flushes every file still open (as tearing down the modules would close them) and
its standard streams, then leaves with ``os._exit``. Tearing down the torch modules would take
most of a second, in a fresh interpreter as here, and shows nothing a program can observe.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import json
import os
import runpy
import sys
import threading
import traceback
import types

import numpy
import torch  # noqa: F401
import torchvision  # noqa: F401


def _reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _serve() -> dict | None:
    """Answers requests until end of input; returns a request in a forked child, None at the end."""
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            return request
        _reply({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _reply({"returncode": os.waitstatus_to_exitcode(status)})
    return None


def _become(request: dict) -> None:
    """Turns this forked child into ``python ARGV`` started in the request's setting."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    argv = request["argv"]
    # The interpreter puts the working directory (`-m`) or the script's folder first on the path,
    # where this server's own folder is now.
    if argv[0] == "-m":
        sys.path[0] = os.getcwd()
        sys.argv = ["-m", *argv[2:]]
    elif argv[0] == "-c":
        sys.path[0] = ""
        sys.argv = ["-c", *argv[2:]]
    else:
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        sys.argv = list(argv)
    numpy.random.seed()  # a fresh interpreter seeds numpy from the OS; `random` reseeds itself


def _run(argv: list[str]) -> None:
    if argv[0] == "-m":
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif argv[0] == "-c":
        main = sys.modules["__main__"] = types.ModuleType("__main__")
        exec(compile(argv[1], "<string>", "exec"), main.__dict__)
    else:
        runpy.run_path(argv[0], run_name="__main__")


def _exit_status(exit: SystemExit) -> int:
    """The status the interpreter gives an uncaught SystemExit (printing a non-integer code)."""
    if exit.code is None:
        return 0
    if isinstance(exit.code, int):
        return exit.code
    sys.stderr.write(f"{exit.code}\n")
    return 1


def _end(status: int) -> None:
    """Ends the child as the interpreter would end the program, without tearing down modules."""
    threading._shutdown()  # type: ignore[attr-defined]  # waits for non-daemon threads
    atexit._run_exitfuncs()
    # The child's own open files (the server's objects are frozen, so not listed), then stdio.
    files = [obj for obj in gc.get_objects() if isinstance(obj, io.IOBase) and not obj.closed]
    for stream in (*files, sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status & 0xFF)


gc.collect()
gc.freeze()
request = _serve()
if request is None:
    sys.exit(0)
_become(request)


try:
    _run(request["argv"])
except SystemExit as exit:
    _end(_exit_status(exit))
except Exception as error:  # as the interpreter reports it, without this file's frames
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in (__file__, runpy.__file__):
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb)
    _end(1)
_end(0)
