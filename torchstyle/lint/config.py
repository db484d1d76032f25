"""``[tool.torchstyle.lint]`` in pyproject.toml.

Keys (dashes or underscores)::

    [tool.torchstyle.lint]
    select = ["TS1", "TS2"]          # replaces the default rule set
    extend-select = ["TS601"]        # adds rules (e.g. ones that are off by default)
    ignore = ["TS401"]               # removes rules
    exclude = ["tests/lint/fixtures", "legacy/"]   # gitignore syntax, relative to this file
    respect-gitignore = true         # honour .gitignore files (default true)
    target-torch = "2.4"             # the oldest torch the code supports (TS503)

    [tool.torchstyle.lint.per-file-ignores]
    "scripts/*.py" = ["TS401"]

Each file gets the nearest pyproject.toml with that section, from the file's own folder
upwards (as ruff does), so a sub-project's settings apply when linting from the repository
root; ``--config`` names one for every file, ``--isolated`` ignores them all.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from torchstyle.errors import UserError
from torchstyle.lint import files, registry


def _tomllib() -> Any:
    """The TOML reader (imported on first use: most runs read no pyproject.toml)."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:  # pragma: no cover - exercised on Python 3.10 only
        import tomli

        return tomli
    except ImportError:  # pragma: no cover - the pre-commit hook runs without installing anything
        return None


_KEYS = (
    "select",
    "extend-select",
    "ignore",
    "exclude",
    "per-file-ignores",
    "respect-gitignore",
    "target-torch",
)


@dataclass
class LintConfig:
    """Settings from pyproject.toml; ``root`` is the folder relative paths start from."""

    root: str = field(default_factory=os.getcwd)
    path: str | None = None
    select: list[str] | None = None
    extend_select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    respect_gitignore: bool = True
    target_torch: tuple[int, ...] | None = None


def find_pyproject(start: str) -> str | None:
    """The nearest pyproject.toml at or above folder ``start`` that has ``[tool.torchstyle.lint]``."""
    for folder in files.ancestors(os.path.abspath(start)):
        candidate = os.path.join(folder, "pyproject.toml")
        if _has_section(candidate):
            return candidate
    return None


def _load_toml(path: str) -> dict[str, Any]:
    tomllib = _tomllib()
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise UserError(f"reading {path} needs Python 3.11+ or the tomli package; install tomli")
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
            return data
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML: {e}") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None


def _str_list(value: Any, key: str, path: str) -> list[str]:
    if isinstance(value, str):
        return registry.split_codes(value) if key != "exclude" else [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise UserError(f"{path}: [tool.torchstyle.lint] {key} must be a list of strings")


def _version(value: Any, path: str) -> tuple[int, ...]:
    if isinstance(value, str):
        from torchstyle.lint import deprecations

        try:
            return deprecations.version(value)
        except ValueError:
            pass
    # a bare number is refused too: TOML reads 2.10 as 2.1
    raise UserError(
        f'{path}: [tool.torchstyle.lint] target-torch must be a quoted version such as "2.4", '
        f"not {value!r}"
    )


class ConfigFinder:
    """Finds each file's configuration: the nearest pyproject.toml with our section above it.

    Folders are looked up once each (a run over thousands of files reads each pyproject.toml
    once).
    """

    def __init__(self) -> None:
        self._by_folder: dict[str, str | None] = {}
        self._configs: dict[str | None, LintConfig] = {}

    def pyproject_for(self, path: str) -> str | None:
        """The pyproject.toml that applies to the file (or folder) ``path``, if any."""
        folder = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path) or ".")
        seen: list[str] = []
        found: str | None = None
        for above in files.ancestors(folder):
            if above in self._by_folder:
                found = self._by_folder[above]
                break
            seen.append(above)
            if _has_section(os.path.join(above, "pyproject.toml")):
                found = os.path.join(above, "pyproject.toml")
                break
        for visited in seen:
            self._by_folder[visited] = found
        return found

    def config(self, pyproject: str | None) -> LintConfig:
        """The loaded configuration of ``pyproject`` (defaults for None), loaded once."""
        config = self._configs.get(pyproject)
        if config is None:
            config = self._configs[pyproject] = load_config(pyproject, validate=False)
        return config


def _has_section(candidate: str) -> bool:
    if not os.path.isfile(candidate):
        return False
    try:
        with open(candidate, "rb") as f:
            if b"torchstyle" not in f.read():
                return False
    except OSError:
        return False
    data = _load_toml(candidate)
    return "lint" in data.get("tool", {}).get("torchstyle", {})


def load_config(path: str | None, *, validate: bool = True) -> LintConfig:
    """Reads the lint section of the pyproject.toml at ``path`` (defaults when None).

    Args:
        path: The pyproject.toml, or None for the defaults.
        validate: Check the rule codes now (:func:`validate_codes`); checking them loads every
            rule, which a run served from the cache does without.
    """
    if path is None:
        return LintConfig()
    data = _load_toml(path)
    section = data.get("tool", {}).get("torchstyle", {}).get("lint", {})
    if not isinstance(section, dict):
        raise UserError(f"{path}: [tool.torchstyle.lint] must be a table")
    config = LintConfig(root=os.path.dirname(os.path.abspath(path)), path=path)
    for raw_key, value in section.items():
        key = raw_key.replace("_", "-")
        if key not in _KEYS:
            raise UserError(
                f"{path}: unknown key {raw_key!r} in [tool.torchstyle.lint]; "
                f"known keys: {', '.join(_KEYS)}"
            )
        if key == "select":
            config.select = _str_list(value, key, path)
        elif key == "extend-select":
            config.extend_select = _str_list(value, key, path)
        elif key == "ignore":
            config.ignore = _str_list(value, key, path)
        elif key == "exclude":
            config.exclude = _str_list(value, key, path)
        elif key == "target-torch":
            config.target_torch = _version(value, path)
        elif key == "respect-gitignore":
            if not isinstance(value, bool):
                raise UserError(f"{path}: [tool.torchstyle.lint] {key} must be true or false")
            config.respect_gitignore = value
        else:
            if not isinstance(value, dict):
                raise UserError(f"{path}: [tool.torchstyle.lint.per-file-ignores] must be a table")
            config.per_file_ignores = {
                str(glob): _str_list(codes, key, path) for glob, codes in value.items()
            }
    if validate:
        validate_codes(config)
    return config


def validate_codes(config: LintConfig) -> None:
    """Raises a :class:`UserError` naming the pyproject.toml when a rule code matches nothing.

    A typo in pyproject.toml is an error, not a silent no-op.
    """
    path = config.path
    for selectors, option in (
        (config.select or [], "select"),
        (config.extend_select, "extend-select"),
        (config.ignore, "ignore"),
        *(
            (codes, f"per-file-ignores[{glob!r}]")
            for glob, codes in config.per_file_ignores.items()
        ),
    ):
        try:
            registry.expand(selectors, option=option)
        except UserError as e:
            raise UserError(f"{path}: {e}") from None
