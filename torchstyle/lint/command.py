"""CLI glue for ``torchstyle lint`` (placeholder until the lint issue lands)."""

from __future__ import annotations

import argparse

from torchstyle.errors import UserError


def add_lint_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``lint`` flags."""
    parser.add_argument("paths", nargs="*")


def run_lint(args: argparse.Namespace) -> int:
    """Not available yet."""
    raise UserError("`torchstyle lint` has not landed yet (issue 5)")
