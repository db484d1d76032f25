"""The run folder as something torchstyle owns: a marker, an OS lock, guarded overwrite, history.

* A run writes a marker file (``.torchstyle-run``) when it creates its folder. ``--overwrite``
  replaces only a folder with that marker and nothing else in it than what a run writes; any
  other folder (a thesis, photos, the working directory, one of its parents, home, ``/``) is
  refused before a byte is touched.
* A run holds an exclusive ``fcntl.flock`` on ``.lock`` in its folder for its whole life. The
  kernel drops the lock when the process ends, however it ends (SIGKILL and OOM kills
  included), so a stale lock never blocks a rerun. The holder's pid and host are written in
  the file so a second run can name it.
* ``resume_history.jsonl`` gets one line per resume: when, at which step, and the flags that
  changed.
* The folder's identity (device and inode) is remembered when the lock is taken, so a save can
  tell that the folder was deleted or moved away under the run.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from torchstyle import writes
from torchstyle.errors import UserError

log = logging.getLogger(__name__)

MARKER = ".torchstyle-run"
LOCK = ".lock"
HISTORY = "resume_history.jsonl"
CHECKPOINTS = "checkpoints"

# What a run (and the commands working on it) writes at the top of its folder; anything else
# belongs to the user. data.json: how the data was decided; status.json, mlflow.json and
# sweep_trial.json: the experiment tracking's; model/: a copy of a user's model file;
# model.pt2: the inference program of a module given as an instance (``programs.py``);
# metrics/: evaluation images; export/ and predictions/: `export` and `predict` outputs.
_RUN_FILES = {
    MARKER, LOCK, HISTORY, CHECKPOINTS, "config.json", "config.txt", "metrics.jsonl",
    "data.json", "status.json", "mlflow.json", "sweep_trial.json", "model.pt2", "preprocessing.json",
}  # fmt: skip
_RUN_DIRS = {CHECKPOINTS, "samples", "metrics", "model", "export", "predictions"}
_RUN_PREFIXES = (
    "events.out.tfevents.", ".config.json.tmp-", ".config.txt.tmp-", ".status.json.",
    ".tmp-model.pt2",
)  # fmt: skip


class RunLockedError(UserError):
    """Another process holds the run folder's lock."""


class RunFolderLostError(UserError):
    """The run folder was deleted or moved away while the run was writing to it (exit code 3)."""

    exit_code = 3


def check_run_dir_path(path: Path) -> None:
    """Refuses a path that cannot be a run folder, before anything is created.

    Raises:
        UserError: The path is a file, lies under a file, has a name too long for the file
            system, or its nearest existing folder is not writable.
    """
    max_name = _name_max(path)
    for part in path.parts:
        if len(os.fsencode(part)) > max_name:
            raise UserError(
                f"run folder {str(path)[:60]}...: the name {part[:40]}... is longer than the file "
                f"system allows ({max_name} bytes); pass a shorter --run-dir"
            )
    if path.exists() and not path.is_dir():
        raise UserError(f"run folder {path} is a file, not a folder; pass another --run-dir")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"run folder {path} lies under {existing}, which is a file; pass another --run-dir"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"run folder {path}: {existing} is not writable; fix its permissions or pass "
            "another --run-dir"
        )


def _name_max(path: Path) -> int:
    probe = path.absolute().parent
    while probe.parent != probe and not os.path.isdir(probe):
        probe = probe.parent
    try:
        return os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def is_run_folder(path: Path) -> bool:
    """True when ``path`` holds a run's marker."""
    return (path / MARKER).is_file()


def foreign_entries(path: Path) -> list[str]:
    """Names at the top of ``path`` that a run does not write (the user's files)."""
    foreign = []
    for entry in sorted(path.iterdir()):
        name = entry.name
        if name in _RUN_DIRS and entry.is_dir() and not entry.is_symlink():
            continue
        if name in _RUN_FILES - _RUN_DIRS and entry.is_file() and not entry.is_symlink():
            continue
        if name.startswith(_RUN_PREFIXES) and entry.is_file():
            continue
        foreign.append(name)
    return foreign


def _protected(path: Path) -> str | None:
    """Why ``path`` may never be replaced, or None."""
    target = path.resolve()
    cwd = Path.cwd().resolve()
    if target == Path(target.anchor):
        return "it is the file system root"
    if target == Path.home().resolve():
        return "it is your home folder"
    if target == cwd:
        return "it is the working directory"
    if target in cwd.parents:
        return "it holds the working directory"
    return None


def check_overwrite(path: Path) -> None:
    """Refuses ``--overwrite`` of anything but a torchstyle run folder; touches nothing.

    Raises:
        UserError: The folder is protected (root, home, the working directory or one of its
            parents), is not a run folder, or holds files a run does not write.
    """
    if not path.exists():
        return
    if not path.is_dir() or path.is_symlink():
        raise UserError(
            f"--overwrite {path}: not a folder torchstyle created; pass another --run-dir"
        )
    reason = _protected(path)
    if reason:
        raise UserError(
            f"--overwrite refuses {path}: {reason}; pass a run folder (e.g. --run-dir runs/NAME)"
        )
    if not any(path.iterdir()):
        return
    if not is_run_folder(path):
        raise UserError(
            f"--overwrite refuses {path}: it is not a torchstyle run folder (no {MARKER}); "
            "move your files elsewhere or pass another --run-dir"
        )
    foreign = foreign_entries(path)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise UserError(
            f"--overwrite refuses {path}: it holds files a run does not write ({shown}); "
            "move them out or pass another --run-dir"
        )


def clear_run_folder(path: Path) -> None:
    """Empties a run folder that :func:`check_overwrite` accepted, keeping its lock file."""
    check_overwrite(path)
    for entry in path.iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def write_marker(path: Path) -> None:
    """Marks ``path`` as a run folder (kept if present: it records when the run began)."""
    marker = path / MARKER
    if marker.exists():
        return
    info = {"format": "torchstyle-run", "version": 1, "created": _now(), "argv": sys.argv[1:]}
    atomic_write_text(marker, json.dumps(info) + "\n")


def atomic_write_text(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename: never half a file.

    Raises:
        WriteError: The write failed; ``path`` is untouched.
    """
    writes.atomic_write_text(path, text)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunLock:
    """An exclusive OS lock on a run folder, held until :meth:`release` or the process ends.

    Args:
        run_dir: The run folder (created if missing).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None

    def acquire(self) -> None:
        """Takes the lock, or refuses naming the process that holds it.

        Raises:
            RunLockedError: Another process holds it.
        """
        import fcntl

        writes.make_dirs(self.run_dir, fix="or pass another --run-dir")
        path = self.run_dir / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunLockedError(_in_use(self.run_dir)) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        st = os.stat(self.run_dir)
        self._identity = (st.st_dev, st.st_ino)

    def release(self) -> None:
        """Drops the lock (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def folder_lost(self) -> bool:
        """True when the locked folder was deleted or moved away since :meth:`acquire`."""
        if self._identity is None:
            return False
        try:
            st = os.stat(self.run_dir)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._identity or not is_run_folder(self.run_dir)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def refuse_if_in_use(run_dir: Path) -> None:
    """Refuses a run folder another process holds, taking and dropping its lock at once.

    Checked first, so that a busy run is called busy, not "already exists" or "resumed".

    Raises:
        RunLockedError: Another process holds the folder's lock.
    """
    import fcntl

    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return  # no lock file (a new folder) or none we may read: the acquire will tell
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunLockedError(_in_use(run_dir)) from None
    finally:
        os.close(fd)


def _in_use(run_dir: Path) -> str:
    return (
        f"run folder {run_dir} is in use by {read_holder(run_dir)}; wait for it to finish, "
        "stop it, or pass another --run-dir"
    )


def read_holder(run_dir: Path) -> str:
    """``pid N on HOST`` from a lock file, or a fallback when it cannot be read."""
    try:
        info = json.loads((run_dir / LOCK).read_text())
        return f"pid {int(info['pid'])} on {info['host']} (since {info.get('since', '?')})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def append_history(run_dir: Path, record: dict[str, Any]) -> None:
    """Appends one resume to ``resume_history.jsonl`` (fsynced: it is the run's record)."""
    line = json.dumps({"time": _now(), **record}, sort_keys=True, default=str) + "\n"
    writes.append_text(run_dir / HISTORY, line, sync=True)


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The resumes recorded in a run folder, oldest first."""
    path = run_dir / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_config(
    config: dict[str, Any], run_dir: Path, *, before: dict[str, Any] | None = None
) -> None:
    """Writes the guide's ``config.txt`` and ``config.json``, each atomically.

    ``config.json`` also records the ``environment`` (CPU threads, device, library versions);
    a resume, or a rerun with the same ``--seed``, in another one is warned about, since its
    numbers will not be bit-identical. ``before`` is the folder's earlier ``config.json``
    (read here when None; a caller that empties the folder first reads it before).
    """
    import argparse

    from torchstyle.engine import reproducibility

    now = reproducibility.environment(config.get("device"))
    before = read_config(run_dir) if before is None else before
    if before.get("seed") == config.get("seed"):
        changed = reproducibility.environment_changes(before.get("environment"), now)
        if changed:
            log.warning(
                "this run's environment differs from its earlier one (%s): results will not "
                "be bit-identical (see docs/training.md, Reproducibility)",
                ", ".join(changed),
            )
    config = {**config, "environment": now}
    atomic_write_text(run_dir / "config.txt", str(argparse.Namespace(**config)) + "\n")
    atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_config(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``config.json`` as written (empty when missing or unreadable)."""
    try:
        data = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_output_file(path: Path, flag: str = "--output") -> None:
    """Refuses an output file path that cannot be written, before any work is done.

    Raises:
        UserError: The path is a folder, its folder is missing or a file, or not writable.
    """
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; pass a file name, e.g. {path / 'out.csv'}")
    parent = path.parent
    if not parent.is_dir():
        what = "is a file" if parent.exists() else "does not exist"
        raise UserError(
            f"{flag} {path}: the folder {parent} {what}; create it or pass another path"
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{flag} {path} is not writable; fix its permissions or pass another path")
