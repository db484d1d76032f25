"""``torchstyle lint``: the style guide's don'ts, found in anyone's PyTorch code.

Library use::

    from torchstyle.lint import lint_source
    for finding in lint_source(open("train.py").read(), "train.py"):
        print(finding.code, finding.line, finding.message)

Nothing here imports torch: the linter reads code, it never runs it.
"""

from torchstyle.lint.base import Edit, Finding, Fix, Rule
from torchstyle.lint.registry import all_rules
from torchstyle.lint.runner import Linter, lint_source

__all__ = ["Edit", "Finding", "Fix", "Linter", "Rule", "all_rules", "lint_source"]
