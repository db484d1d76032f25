"""Which files to lint: walk the given paths, skip virtualenvs, caches and excluded patterns.

Exclude patterns use ``.gitignore`` syntax (``build/``, ``*.pyi``, ``/docs``, ``tests/**/data``,
``!keep.py``); ``.gitignore`` files met on the way are honoured too, each for its own folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

#: Folders never walked into (they are not the user's code).
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git/",
    ".hg/",
    ".svn/",
    ".bzr/",
    ".venv/",
    "venv/",
    ".env/",
    ".tox/",
    ".nox/",
    ".eggs/",
    "*.egg-info/",
    "__pycache__/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".torchstyle_cache/",
    ".hypothesis/",
    ".ipynb_checkpoints/",
    "node_modules/",
    "site-packages/",
    "__pypackages__/",
    "build/",
    "dist/",
    "_build/",
)


#: What a folder walk picks up: Python files and Jupyter notebooks.
SUFFIXES: tuple[str, ...] = (".py", ".ipynb")
#: What a file named on the command line may end with (a script may have no suffix).
NAMED_SUFFIXES: tuple[str, ...] = (*SUFFIXES, ".pyi", ".pyw")


def ancestors(folder: str) -> Iterator[str]:
    """``folder`` and each folder above it, up to the file system's root."""
    while True:
        yield folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def is_notebook(path: str) -> bool:
    """Whether ``path`` names a Jupyter notebook (by its suffix)."""
    return path.endswith(".ipynb")


def lintable(path: str) -> bool:
    """Whether a file named on the command line is one torchstyle reads (by its name)."""
    name = os.path.basename(path)
    return name.endswith(NAMED_SUFFIXES) or "." not in name.lstrip(".")


@dataclass(frozen=True)
class Pattern:
    """One compiled gitignore-style pattern, relative to ``base`` (an absolute folder)."""

    regex: re.Pattern[str]
    base: str
    negate: bool
    dir_only: bool
    text: str

    def matches(self, path: str, is_dir: bool) -> bool:
        """Whether the absolute ``path`` matches this pattern."""
        if self.dir_only and not is_dir:
            return False
        if self.base == path:
            return False
        prefix = self.base.rstrip(os.sep) + os.sep
        if not path.startswith(prefix):
            return False
        rel = path[len(prefix) :].replace(os.sep, "/")
        return self.regex.fullmatch(rel) is not None


def _translate(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == n:
            out.append("/.*")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = glob[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def compile_pattern(text: str, base: str) -> Pattern | None:
    """Compiles one gitignore line; None for blank lines and comments."""
    line = text.rstrip("\n").rstrip()
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")
    if negate:
        line = line[1:]
    line = line.removeprefix("\\")
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    body = _translate(line)
    regex = body if anchored else f"(?:.*/)?{body}"
    try:
        compiled = re.compile(regex)
    except re.error:
        return None
    return Pattern(compiled, os.path.abspath(base), negate, dir_only, text)


def compile_patterns(lines: Iterable[str], base: str) -> list[Pattern]:
    """Compiles gitignore lines relative to ``base``."""
    return [p for p in (compile_pattern(line, base) for line in lines) if p is not None]


def is_excluded(path: str, is_dir: bool, patterns: Iterable[Pattern]) -> bool:
    """Whether ``path`` itself is excluded (the last matching pattern wins, ``!`` re-includes)."""
    excluded = False
    for pattern in patterns:
        if pattern.negate == excluded and pattern.matches(path, is_dir):
            excluded = not pattern.negate
    return excluded


def is_excluded_anywhere(path: str, patterns: Iterable[Pattern]) -> bool:
    """Whether ``path`` or one of its parent folders is excluded."""
    patterns = list(patterns)
    path = os.path.abspath(path)
    if is_excluded(path, os.path.isdir(path), patterns):
        return True
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent):
        if is_excluded(parent, True, patterns):
            return True
        parent = os.path.dirname(parent)
    return False


def _read_gitignore(folder: str) -> list[Pattern]:
    try:
        with open(os.path.join(folder, ".gitignore"), encoding="utf-8", errors="replace") as f:
            return compile_patterns(f, folder)
    except OSError:
        return []


def _is_virtualenv(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "pyvenv.cfg"))


def iter_python_files(
    root: str,
    patterns: list[Pattern],
    *,
    respect_gitignore: bool = True,
) -> Iterator[str]:
    """Yields the ``.py`` and ``.ipynb`` files under folder ``root`` that no pattern excludes, sorted.

    Symlinked folders are not followed; folders holding a ``pyvenv.cfg`` (virtualenvs) are
    skipped. Paths are yielded as ``root`` joined with the relative path.
    """
    inherited = list(patterns)
    if respect_gitignore:
        inherited += _read_gitignore(root)
    yield from _walk(root, os.path.abspath(root), inherited, respect_gitignore)


def _walk(folder: str, absolute: str, patterns: list[Pattern], gitignore: bool) -> Iterator[str]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        abs_path = os.path.join(absolute, entry.name)
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            is_file = entry.is_file()
        except OSError:
            continue
        if is_dir:
            if is_excluded(abs_path, True, patterns) or _is_virtualenv(entry.path):
                continue
            child = patterns + _read_gitignore(entry.path) if gitignore else patterns
            yield from _walk(entry.path, abs_path, child, gitignore)
        elif (
            is_file and entry.name.endswith(SUFFIXES) and not is_excluded(abs_path, False, patterns)
        ):
            yield entry.path
