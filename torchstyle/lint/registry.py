"""The rule registry: every module under ``torchstyle/lint/rules/`` registers its rule here.

Rules live one per file, in the folder of their category (``rules/loops/log_every_step.py``
holds TS301). A new rule is a new file with a class decorated by :func:`register`; nothing
else changes. Codes follow the scheme in ``docs/lint.md``: ``TS`` + category digit + two digits.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable

from torchstyle.errors import UserError
from torchstyle.lint.base import Rule

_CODE = re.compile(r"^TS\d{3}$")
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")

#: Category digit -> title; the first digit after ``TS`` says what a rule is about.
CATEGORIES: dict[str, str] = {
    "0": "Files torchstyle could not check",
    "1": "Modules: defining and calling nn.Module",
    "2": "Autograd: tensors, losses and the graph",
    "3": "Training and evaluation loops, data loading",
    "4": "Reproducibility and experiment configuration",
    "5": "Deprecated and unsafe APIs",
    "6": "Style: naming and file layout",
}

#: Category digit -> the folder of ``torchstyle/lint/rules/`` its rules live in.
FOLDERS: dict[str, str] = {
    "0": "unchecked",
    "1": "modules",
    "2": "autograd",
    "3": "loops",
    "4": "reproducibility",
    "5": "apis",
    "6": "style",
}

_PACKAGE = "torchstyle.lint.rules."
_RULES: dict[str, type[Rule]] = {}
_loaded = False


def register(cls: type[Rule]) -> type[Rule]:
    """Class decorator that adds a rule to the registry.

    Raises:
        TypeError: the code or name is malformed, the rule is not in its category's folder,
            or another rule already has the code (a mistake in the rule, not in user input).
    """
    problem = None
    folder = FOLDERS.get(cls.code[2:3], "?")
    if not _CODE.match(cls.code) or cls.code[2] not in CATEGORIES:
        problem = f"bad code {cls.code!r} (want TS + a category digit + 2 digits)"
    elif not _NAME.match(cls.name):
        problem = f"name {cls.name!r} must be kebab-case"
    elif cls.__module__.startswith(_PACKAGE) and not cls.__module__.startswith(
        f"{_PACKAGE}{folder}."
    ):
        problem = f"{cls.code} belongs in torchstyle/lint/rules/{folder}/"
    else:
        existing = _RULES.get(cls.code)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            problem = f"{cls.code} is taken by {existing.__qualname__}"
    if problem is not None:
        raise TypeError(f"{cls.__qualname__}: {problem}")
    _RULES[cls.code] = cls
    return cls


def all_rules() -> dict[str, type[Rule]]:
    """Every registered rule by code, in code order (imports the rule modules once)."""
    global _loaded
    if not _loaded:
        from torchstyle.lint import rules

        for folder in FOLDERS.values():
            package = importlib.import_module(f"{rules.__name__}.{folder}")
            for info in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{package.__name__}.{info.name}")
        _loaded = True
    return dict(sorted(_RULES.items()))


def rule_for(code: str) -> type[Rule]:
    """The rule with ``code`` (case-insensitive), or a :class:`UserError` naming the known ones."""
    rules = all_rules()
    cls = rules.get(code.strip().upper())
    if cls is None:
        by_name = {r.name: r for r in rules.values()}
        cls = by_name.get(code.strip().lower())
    if cls is None:
        raise UserError(f"unknown rule {code!r}; known rules: {', '.join(rules)}")
    return cls


def expand(selectors: Iterable[str], *, option: str) -> set[str]:
    """Codes matched by ``selectors``: full codes, prefixes (``TS1``, ``TS10``) or ``ALL``.

    Raises:
        UserError: a selector matches no rule (a typo would otherwise silently do nothing).
    """
    codes = list(all_rules())
    out: set[str] = set()
    for raw in selectors:
        selector = raw.strip().upper()
        if not selector:
            continue
        if selector == "ALL":
            out.update(codes)
            continue
        matched = [c for c in codes if c.startswith(selector)]
        if not matched:
            raise UserError(
                f"{option}: {raw!r} matches no rule; use a code or prefix such as TS1 or TS102 "
                "(see `torchstyle lint --explain CODE`)"
            )
        out.update(matched)
    return out


def resolve_selection(
    select: Iterable[str] | None,
    extend_select: Iterable[str] = (),
    ignore: Iterable[str] = (),
) -> set[str]:
    """The codes to check: ``select`` (default: the rules on by default) + extras - ignored."""
    if select is None:
        chosen = {code for code, rule in all_rules().items() if rule.default_enabled}
    else:
        chosen = expand(select, option="select")
    chosen |= expand(extend_select, option="extend-select")
    chosen -= expand(ignore, option="ignore")
    return chosen


def split_codes(value: str) -> list[str]:
    """Splits ``"TS101, TS2"`` (commas and/or spaces) into selectors."""
    return [part for part in re.split(r"[\s,]+", value) if part]
