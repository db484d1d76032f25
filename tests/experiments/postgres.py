"""A throw-away PostgreSQL server for the sweep tests, started from the machine's server binaries.

``server()`` runs ``initdb`` and ``pg_ctl`` (as an unprivileged user when the tests run as
root, since the server refuses root) on a free loopback port, with a socket and data folder in
a temporary folder, creates a database and a password-protected role, and stops and deletes it
all at the end. Where no server binary exists the caller skips with the reason it returns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import HANG_TIMEOUT

USER = "sweeper"
PASSWORD = "s3cret-Pw-4-tests"
DATABASE = "sweeps"


@dataclass
class Server:
    """A running server: its URL without the password, and the password."""

    url: str
    password: str


def bindir() -> Path | None:
    """The newest PostgreSQL server binaries (the Debian layout, else on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


def missing() -> str | None:
    """Why these tests cannot run here, or None."""
    if bindir() is None:
        return "no PostgreSQL server binary (initdb): apt-get install postgresql"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "no PostgreSQL driver: pip install 'torchstyle[sweep-postgres]'"
    if os.geteuid() == 0 and _unprivileged() is None:
        return "running as root and no unprivileged user (postgres or nobody) to run the server"
    return None


def _unprivileged() -> pwd.struct_passwd | None:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server() -> Iterator[Server]:
    """Starts a server, yields it, stops it and deletes its files."""
    bins = bindir()
    assert bins is not None
    root = Path(tempfile.mkdtemp(prefix="torchstyle-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = _unprivileged()
        assert user is not None
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", user.pw_name, "--"]
    (root / "pw").write_text(PASSWORD + "\n")
    if prefix:
        os.chown(root / "pw", user.pw_uid, user.pw_gid)
    port = _free_port()

    def run(*cmd: str) -> None:
        subprocess.run(
            [*prefix, *cmd], check=True, capture_output=True, cwd=root, timeout=HANG_TIMEOUT
        )

    data = root / "data"
    run(str(bins / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(root / "pw"),
        "--auth-local", "trust", "--auth-host", "scram-sha-256", "--no-sync", "--no-instructions")  # fmt: skip
    options = (
        f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    try:
        run(str(bins / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "120", "start")  # fmt: skip
        run(str(bins / "createdb"), "-h", str(root), "-p", str(port), "-U", USER, DATABASE)
        yield Server(f"postgresql://{USER}@127.0.0.1:{port}/{DATABASE}", PASSWORD)
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            run(str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
