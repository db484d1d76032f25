"""``torchstyle lint``: the style guide's don'ts, found in anyone's PyTorch code.

Library use::

    from torchstyle.lint import lint_source
    for finding in lint_source(open("train.py").read(), "train.py"):
        print(finding.code, finding.line, finding.message)

Nothing here imports torch: the linter reads code, it never runs it. Names are loaded on
first use (PEP 562), so that ``torchstyle lint`` served from its cache never loads the rules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchstyle.lint.base import Edit, Finding, Fix, Rule
    from torchstyle.lint.registry import all_rules
    from torchstyle.lint.runner import Linter, lint_source

__all__ = ["Edit", "Finding", "Fix", "Linter", "Rule", "all_rules", "lint_source"]

_HOMES = {
    "Edit": "torchstyle.lint.base",
    "Finding": "torchstyle.lint.base",
    "Fix": "torchstyle.lint.base",
    "Rule": "torchstyle.lint.base",
    "all_rules": "torchstyle.lint.registry",
    "Linter": "torchstyle.lint.runner",
    "lint_source": "torchstyle.lint.runner",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'torchstyle.lint' has no attribute {name!r}")
