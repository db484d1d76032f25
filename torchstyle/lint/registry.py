"""The rule registry: every module in ``torchstyle/lint/rules/`` registers its rule here.

A new rule is a new file with a class decorated by :func:`register`; nothing else changes.
Codes follow the scheme in ``docs/lint.md``: ``TS`` + category digit + two digits.
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

_RULES: dict[str, type[Rule]] = {}
_loaded = False


def register(cls: type[Rule]) -> type[Rule]:
    """Class decorator that adds a rule to the registry (its code must be new)."""
    assert _CODE.match(cls.code), f"{cls.__name__}: bad code {cls.code!r} (want TS + 3 digits)"
    assert _NAME.match(cls.name), f"{cls.__name__}: name {cls.name!r} must be kebab-case"
    assert cls.code[2] in CATEGORIES, f"{cls.code}: unknown category {cls.code[2]}"
    existing = _RULES.get(cls.code)
    assert existing is None or existing.__qualname__ == cls.__qualname__, (
        f"{cls.code} is registered twice ({existing} and {cls})"
    )
    _RULES[cls.code] = cls
    return cls


def all_rules() -> dict[str, type[Rule]]:
    """Every registered rule by code, in code order (imports the rule modules once)."""
    global _loaded
    if not _loaded:
        from torchstyle.lint import rules

        for info in pkgutil.iter_modules(rules.__path__):
            importlib.import_module(f"{rules.__name__}.{info.name}")
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
