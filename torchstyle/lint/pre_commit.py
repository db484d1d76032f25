#!/usr/bin/env python3
"""The pre-commit hook's entry: ``torchstyle lint`` run straight from a checkout of this repository.

pre-commit clones the repository and runs this file (``language: script``), so nothing is
installed: not torch, not even torchstyle. The linter needs only the standard library (and
``tomli`` on Python 3.10), so it runs in any Python >= 3.10 on the PATH.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Runs ``torchstyle lint ARGV``; returns the exit code."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if root not in sys.path:
        sys.path.insert(0, root)
    import argparse

    from torchstyle.errors import UserError
    from torchstyle.lint.command import add_lint_arguments, run_lint

    parser = argparse.ArgumentParser(prog="torchstyle lint")
    add_lint_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run_lint(args)
    except UserError as e:
        sys.stderr.write(f"torchstyle lint: error: {e}\n")
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
