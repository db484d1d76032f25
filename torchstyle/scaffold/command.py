"""CLI glue for ``torchstyle new``: flags, then :func:`torchstyle.scaffold.project.write_project`.

Prints what it wrote and the project's first two commands (CLI output, not library logging).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from torchstyle.output import CommandOutput
from torchstyle.scaffold.project import DEFAULT_TEMPLATE, list_templates, write_project


def add_new_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``new`` flags."""
    templates = list_templates()
    parser.add_argument(
        "name",
        help="the project's name: a lower_with_under Python identifier; the model file is "
        "NAME.py and the default folder ./NAME",
    )
    parser.add_argument(
        "--template",
        choices=[t.name for t in templates],
        default=DEFAULT_TEMPLATE,
        help="the kind of project (default: %(default)s): "
        + "; ".join(f"{t.name}: {t.description}" for t in templates),
    )
    parser.add_argument(
        "--dir",
        metavar="PATH",
        help="folder to write the project into (default: ./NAME); it must not exist or be empty",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into an existing folder, overwriting the files this command writes "
        "(other files are kept)",
    )


def run_new(args: argparse.Namespace) -> CommandOutput:
    """Writes the project; the output lists its files and first commands."""
    directory = Path(args.dir) if args.dir else None
    root, written = write_project(args.name, args.template, directory, force=args.force)
    lines = [f"created {args.template} project {args.name!r} in {root}/:"]
    lines += [f"  {path.relative_to(root).as_posix()}" for path in written]
    lines += [
        "next:",
        f"  cd {shlex.quote(str(root))}",
        "  python train.py --epochs 5 --run-dir runs/first",
        "  python test.py --run-dir runs/first",
    ]
    return CommandOutput(stdout="\n".join(lines) + "\n")
