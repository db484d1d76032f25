"""The fast path of ``torchstyle lint FILE...``: answer from the cache before loading anything.

An editor or a pre-commit hook runs ``torchstyle lint`` on one or a few files, again and
again. When the command names only files (no flags) and the cache holds every one of them,
this module prints their findings with nothing but the standard library's ``os``, ``json``
and ``hashlib``: no argument parser, no rules, no checker. Anything else (a flag, a folder,
a file the cache does not hold) returns None and the full command runs, which gives the same
output and fills the cache.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from typing import Any

from torchstyle.lint import cache
from torchstyle.lint.output import summary_line

#: The suffixes a folder walk picks up (``files.SUFFIXES``; that module compiles patterns).
SUFFIXES = (".py", ".ipynb")


def _tomllib() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    return None  # pragma: no cover - Python 3.10: the full command reads it with tomli


def _pyproject(path: str) -> tuple[bool, str | None]:
    """(understood, the pyproject.toml that applies) as :class:`config.ConfigFinder` finds it.

    Not understood: a pyproject.toml that is not valid TOML (the full command says so).
    """
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        candidate = os.path.join(folder, "pyproject.toml")
        try:
            with open(candidate, "rb") as f:
                data = f.read()
        except OSError:
            data = b""
        if b"torchstyle" in data:
            tomllib = _tomllib()
            if tomllib is None:
                return False, None
            try:
                tool = tomllib.loads(data.decode("utf-8")).get("tool", {})
            except (ValueError, UnicodeDecodeError):
                return False, None
            section = tool.get("torchstyle", {}) if isinstance(tool, dict) else {}
            if isinstance(section, dict) and "lint" in section:
                return True, candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return True, None
        folder = parent


def run(argv: Sequence[str]) -> int | None:
    """Prints the cached findings of the files ``argv`` names; None to run the full command.

    Args:
        argv: The words after ``lint``.
    """
    if not argv or any(arg.startswith("-") for arg in argv):
        return None
    store = cache.Cache(os.getcwd(), cache.selection(None, (), ()))
    out: list[str] = []
    found = safe = hidden = 0
    for path in dict.fromkeys(argv):
        if not path.endswith(SUFFIXES):
            return None
        understood, pyproject = _pyproject(path)
        if not understood:
            return None
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                return None
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        rows = store.rows(store.key(data, path, pyproject))
        if rows is None:
            return None
        try:
            shown = os.path.normpath(path)
            out += [cache.text_line(row, shown) for row in rows]
            kinds = [cache.fix_kind(row) for row in rows]
        except (KeyError, TypeError, ValueError):
            return None
        found += len(rows)
        safe += kinds.count("safe")
        hidden += kinds.count("unsafe")
    out.append(summary_line(found, 0, (safe, hidden), unsafe=False, fixing=False))
    try:
        sys.stdout.write("".join(out))
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 1 if found else 0
