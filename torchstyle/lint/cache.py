"""The results cache: a file's findings, kept until its content or anything that decides them
changes, so that a second run over an unchanged tree reads them instead of checking again.

An entry's key hashes the file's bytes and its path with a *salt* made of everything else a
finding depends on: the torchstyle version, the linter's own source files (their sizes and
modification times, so that a changed rule is never served stale results), the Python
version, the command-line rule selection, the pyproject.toml that applies to the file
(its path and bytes) and the project's other Python files (their paths, sizes and modification
times: rules read base classes, flag parsing and saves across files). Entries live in ``.torchstyle_cache/`` in the folder the command runs
in, one small JSON file each; they are written to a temporary file and renamed into place, so
parallel runs never read half an entry. ``--no-cache`` neither reads nor writes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchstyle.lint.base import Finding

FOLDER = ".torchstyle_cache"
_FORMAT = 1
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _code_fingerprint() -> str:
    """Sizes and modification times of the linter's source files."""
    package = sys.modules.get("torchstyle")  # always imported: it holds this package
    parts = [str(getattr(package, "__version__", "")), str(_FORMAT), sys.version]
    for folder, dirs, names in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                stat = os.stat(os.path.join(folder, name))
                parts.append(f"{folder}/{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


_SKIPPED_DIRS = {"__pycache__", "node_modules", "site-packages", FOLDER}


def _project_fingerprint(root: str) -> str:
    """Paths, sizes and modification times of the Python files under ``root``."""
    parts = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in _SKIPPED_DIRS
            and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))
        )
        for name in sorted(names):
            if name.endswith((".py", ".ipynb")):
                try:
                    stat = os.stat(os.path.join(folder, name))
                except OSError:
                    continue
                parts.append(f"{folder}/{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _dump(finding: Finding) -> dict[str, Any]:
    fix = finding.fix
    return {
        "at": [finding.line, finding.col, finding.end_line, finding.end_col, finding.cell],
        "code": finding.code,
        "message": finding.message,
        "fix": None
        if fix is None
        else [fix.applicability, [[e.start, e.end, e.text] for e in fix.edits]],
    }


def _load(row: dict[str, Any], path: str) -> Finding:
    from torchstyle.lint.base import Edit, Finding, Fix

    line, col, end_line, end_col, cell = row["at"]
    fix = None
    if row["fix"] is not None:
        applicability, edits = row["fix"]
        fix = Fix(tuple(Edit(s, e, t) for s, e, t in edits), applicability)
    return Finding(path, line, col, end_line, end_col, row["code"], row["message"], fix, cell)


def selection(
    select: tuple[str, ...] | None, extend_select: tuple[str, ...], ignore: tuple[str, ...]
) -> str:
    """The part of a cache key that the command-line rule selection makes."""
    return repr((select, extend_select, ignore))


def text_line(row: dict[str, Any], shown: str) -> str:
    """A stored finding as a line of the text format (as :func:`output.where` writes it)."""
    line, col, _, _, cell = row["at"]
    where = f"{shown}:cell {cell}:" if cell is not None else f"{shown}:"
    return f"{where}{line}:{col}: {row['code']} {row['message']}\n"


def fix_kind(row: dict[str, Any]) -> str | None:
    """A stored finding's fix applicability (``safe``/``unsafe``), None without a fix."""
    fix = row["fix"]
    return None if fix is None else str(fix[0])


class Cache:
    """Findings per (file content, path, rule selection, configuration, linter version)."""

    def __init__(self, root: str, selection: str) -> None:
        """A cache in ``root/.torchstyle_cache`` for runs with the rule ``selection`` (any
        text that differs when the command-line selection does)."""
        self.folder = os.path.join(root, FOLDER)
        self._base = hashlib.sha256(f"{_code_fingerprint()}\n{selection}".encode()).digest()
        self._salts: dict[str, bytes] = {}

    def _salt(self, pyproject: str | None, path: str) -> bytes:
        # A finding may depend on the project's other files (a base class defined elsewhere,
        # flags parsed in another module, what the project saves anywhere), so the project's
        # Python files are part of the salt: a change to any of them checks every file again.
        root = os.path.dirname(os.path.abspath(pyproject if pyproject is not None else path))
        salt = self._salts.get(root)
        if salt is None:
            digest = hashlib.sha256(self._base)
            digest.update(repr(pyproject).encode())
            if pyproject is not None:
                try:
                    with open(pyproject, "rb") as f:
                        digest.update(f.read())
                except OSError:
                    digest.update(b"unreadable")
            digest.update(_project_fingerprint(root).encode())
            salt = self._salts[root] = digest.digest()
        return salt

    def key(self, data: bytes, path: str, pyproject: str | None) -> str:
        """The key of the file at ``path`` holding ``data`` under ``pyproject``."""
        digest = hashlib.sha256(self._salt(pyproject, path))
        digest.update(os.path.abspath(path).encode("utf-8", "surrogateescape") + b"\0")
        digest.update(data)
        return digest.hexdigest()

    def rows(self, key: str) -> list[dict[str, Any]] | None:
        """The stored findings of ``key`` as JSON rows (see :func:`text_line`), or None."""
        try:
            with open(os.path.join(self.folder, key[:2], key), encoding="utf-8") as f:
                rows = json.load(f)
        except (OSError, ValueError):
            return None
        return rows if isinstance(rows, list) else None

    def get(self, key: str, shown: str) -> list[Finding] | None:
        """The findings stored under ``key`` (reported as file ``shown``), or None."""
        rows = self.rows(key)
        try:
            return None if rows is None else [_load(row, shown) for row in rows]
        except (ValueError, KeyError, TypeError):
            return None  # damaged: check the file again

    def put(self, key: str, findings: list[Finding]) -> None:
        """Stores ``findings`` under ``key``; a cache that cannot be written is skipped."""
        import tempfile  # only a run that checked something writes

        folder = os.path.join(self.folder, key[:2])
        try:
            if not os.path.isdir(self.folder):
                os.makedirs(self.folder, exist_ok=True)
                with open(os.path.join(self.folder, ".gitignore"), "w", encoding="utf-8") as f:
                    f.write("# created by torchstyle lint\n*\n")
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump([_dump(finding) for finding in findings], f)
                os.replace(tmp, os.path.join(folder, key))  # atomic: readers see all or nothing
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass
