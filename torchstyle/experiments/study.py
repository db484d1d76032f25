"""Where a sweep's study lives and who works on it: storage URLs, the stored search, workers.

A sweep's study is any storage Optuna accepts: the default SQLite file in the sweep folder,
a PostgreSQL or MySQL URL (through SQLAlchemy), or a journal file on a shared filesystem
(``journal:PATH``). Several workers (the same ``torchstyle sweep`` command, on one machine or
many) share one study. Every trial records in its system attributes which worker holds it
(host, pid, start time), where its run folder is, and a heartbeat the worker refreshes; a
trial whose heartbeat is older than the grace period, or whose worker on this host is dead,
is taken over by a live worker.

A password never travels in a command line or a file the tool writes: the URL may leave it
out and take it from ``TORCHSTYLE_STORAGE_PASSWORD`` (or the file named by
``TORCHSTYLE_STORAGE_PASSWORD_FILE``; PostgreSQL's own ``PGPASSWORD`` and ``~/.pgpass`` work
too), and every URL the tool shows or saves has its password masked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from torchstyle import extras
from torchstyle.errors import UserError

log = logging.getLogger(__name__)

ENV_PASSWORD = "TORCHSTYLE_STORAGE_PASSWORD"
ENV_PASSWORD_FILE = "TORCHSTYLE_STORAGE_PASSWORD_FILE"
SEARCH_ATTR = "torchstyle:search"
# A trial's system attributes: its worker, run folder, heartbeat and history.
WORKER = "torchstyle:worker"
HOST = "torchstyle:host"
RUN_DIR = "torchstyle:run_dir"
HEARTBEAT = "torchstyle:heartbeat"
RETRIES = "torchstyle:retries"
RETRY_OF_USER = "retry_of"
LOST = "torchstyle:lost"
SURPLUS = "torchstyle:surplus"
RELEASED = "torchstyle:released"
REASON = "torchstyle:reason"
_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")


def mask(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for logs and saved files."""
    if url.startswith("journal:") or "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is refused later with its own message
        return url.split("://", 1)[0] + "://***"


def _password() -> str | None:
    if os.environ.get(ENV_PASSWORD):
        return os.environ[ENV_PASSWORD]
    path = os.environ.get(ENV_PASSWORD_FILE)
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as e:
        raise UserError(
            f"{ENV_PASSWORD_FILE}={path}: cannot read it ({e.strerror}); fix the path"
        ) from None


def resolve_url(url: str) -> str:
    """The URL to connect with: a relative SQLite/journal path made absolute, a password added.

    Raises:
        UserError: A scheme Optuna cannot use, or a PostgreSQL URL without its driver
            (before anything is written).
    """
    if url.startswith("journal:"):
        path = url[len("journal:") :].removeprefix("//")
        return f"journal:{Path(path).expanduser().resolve()}"
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if scheme not in _SCHEMES:
        raise UserError(
            f"--storage {mask(url)}: give a database URL (postgresql://USER@HOST/DB, "
            "mysql://..., sqlite:///FILE) or journal:PATH"
        )
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    _require_driver(parsed, url)
    if scheme == "sqlite" and parsed.database and parsed.database != ":memory:":
        parsed = parsed.set(database=str(Path(parsed.database).expanduser().resolve()))
    password = _password()
    if password is not None and parsed.password is None and scheme != "sqlite":
        parsed = parsed.set(password=password)
    return parsed.render_as_string(hide_password=False)


def _require_driver(parsed: Any, url: str) -> None:
    """Refuses a URL whose SQLAlchemy driver is psycopg when psycopg is not installed: the
    ``sweep-postgres`` extra brings it."""
    from sqlalchemy import exc

    try:
        driver = parsed.get_dialect().driver
    except (exc.NoSuchModuleError, exc.ArgumentError):
        return  # not a dialect SQLAlchemy knows: opening the storage says so
    if driver == "psycopg":
        extras.require("sweep-postgres", f"--storage {mask(url)}", ("psycopg",))


def open_storage(url: str) -> Any:
    """Optuna's storage for a resolved URL (a SQLite file waits for a busy writer, not fails).

    Raises:
        UserError: The database cannot be reached or its driver is missing.
    """
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    from sqlalchemy import exc

    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}
    try:
        for attempt in range(7):
            # Workers started together all create the schema; the losers see duplicates.
            with contextlib.suppress(exc.IntegrityError, exc.ProgrammingError):
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            time.sleep(0.2 * (attempt + 1))
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except ImportError as e:
        raise UserError(
            f"--storage {mask(url)}: its database driver is missing ({e.name or e}); "
            "pip install 'torchstyle[sweep-postgres]' (PostgreSQL) or the driver SQLAlchemy names"
        ) from None
    except Exception as e:  # SQLAlchemy's connection errors have no common base
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"--storage {mask(url)}: cannot open the study storage ({mask(first)}); "
            "check the host, port, database and password"
        ) from None


def first_difference(saved: Any, current: Any, path: str = "") -> str | None:
    """The first place two JSON values differ, as ``path: A there, B here``; None if equal."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in saved:
                return f"{where} is new here"
            if key not in current:
                return f"{where} is missing here"
            found = first_difference(saved[key], current[key], where)
            if found:
                return found
        return None
    if saved != current:
        return f"{path or 'search'} is {json.dumps(saved)} there, {json.dumps(current)} here"
    return None


# ---------------------------------------------------------------------------------- workers
def worker_id() -> str:
    """This process as ``host:pid:start-ticks`` (the start time tells a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def _start_ticks(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def worker_dead(worker: str | None) -> bool:
    """Whether ``worker`` (a :func:`worker_id`) ran on this host and is gone."""
    if not worker:
        return False
    host, _, rest = worker.partition(":")
    pid, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
        return True
    return _start_ticks(int(pid)) != ticks


def stale(attrs: dict[str, Any], grace: float, now: float | None = None) -> bool:
    """Whether a running trial's heartbeat is older than ``grace`` seconds (or its worker died)."""
    beat = attrs.get(HEARTBEAT)
    if attrs.get(RELEASED) or worker_dead(attrs.get(WORKER)):
        return True
    if not isinstance(beat, (int, float)):
        return False
    return (time.time() if now is None else now) - float(beat) > grace


def superseded(trial: Any) -> bool:
    """A trial that does not count: lost with its worker and retried, or asked beyond the budget."""
    attrs = trial.system_attrs
    return bool(attrs.get(SURPLUS)) or (trial.state.name == "FAIL" and bool(attrs.get(LOST)))


def rank(trials: list[Any], number: int) -> int:
    """How many counting trials have a lower number than ``number`` (its place in the budget)."""
    return sum(1 for t in trials if t.number < number and not superseded(t))


def counts(trials: list[Any]) -> tuple[int, int]:
    """``(ended, open)``: counting trials that ended, and those running or waiting."""
    ended = sum(1 for t in trials if t.state.is_finished() and not superseded(t))
    live = sum(1 for t in trials if not t.state.is_finished() and not superseded(t))
    return ended, live
