"""CLI glue for ``torchstyle new`` (placeholder until the scaffold issue lands)."""

from __future__ import annotations

import argparse

from torchstyle.errors import UserError


def add_new_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``new`` flags."""
    parser.add_argument("name")


def run_new(args: argparse.Namespace) -> int:
    """Not available yet."""
    raise UserError("`torchstyle new` has not landed yet (issue 6)")
