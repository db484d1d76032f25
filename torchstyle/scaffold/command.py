"""CLI glue for ``torchstyle new``: flags, then :mod:`torchstyle.scaffold.project` (a new
project) or :mod:`torchstyle.scaffold.update` (``--update`` of an existing one).

Prints what it wrote and the project's first commands (CLI output, not library logging).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from torchstyle.errors import UserError
from torchstyle.output import CommandOutput
from torchstyle.scaffold.project import DEFAULT_TEMPLATE, list_templates, write_project
from torchstyle.scaffold.source import torchstyle_requirement
from torchstyle.scaffold.update import git_available, init_repository, update_project


def add_new_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``new`` flags."""
    templates = list_templates()
    parser.add_argument(
        "name",
        nargs="?",
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
        help="folder to write the project into (default: ./NAME); it must not exist or be "
        "empty. With --update: the project to update (default: .)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into an existing folder, overwriting the files this command writes "
        "(other files are kept); with --update: update a dirty or untracked tree",
    )
    parser.add_argument(
        "--git",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="make the project a git repository with a first commit (default: when git is "
        "installed and the folder is not inside a repository already)",
    )
    parser.add_argument(
        "--torchstyle-source",
        metavar="SRC",
        help="where the project installs torchstyle from: a checkout or wheel, a URL "
        "(git+https://...), or 'index' for the version pin alone (default: where this "
        "torchstyle was installed from; the pin when that was a package index)",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="merge this torchstyle's version of the project's template into the project "
        "in --dir (three-way: your edits stay, conflicts get git's marks)",
    )


def run_new(args: argparse.Namespace) -> CommandOutput:
    """Writes the project, or updates one; the output lists the files and next commands."""
    requirement = torchstyle_requirement(args.torchstyle_source)
    if args.update:
        if args.name:
            raise UserError(
                f"--update takes no NAME ({args.name!r}): it updates the project in --dir "
                "(default: the current folder)"
            )
        root = Path(args.dir) if args.dir else Path()
        report = update_project(root, force=args.force, requirement=requirement)
        return CommandOutput(
            code=1 if report.conflicts else 0, stdout="\n".join(report.lines()) + "\n"
        )
    if not args.name:
        raise UserError("NAME is missing: `torchstyle new NAME` (or --update inside a project)")
    directory = Path(args.dir) if args.dir else None
    try:
        root, written = write_project(
            args.name, args.template, directory, force=args.force, requirement=requirement
        )
    except OSError as e:  # a folder that cannot hold files: /proc, under a file, read-only
        where = directory if directory is not None else Path(args.name)
        raise UserError(
            f"cannot create the project in {where}: {e.strerror or e}; pass another --dir "
            "(a folder you can write to)"
        ) from None
    lines = [f"created {args.template} project {args.name!r} in {root}/:"]
    lines += [f"  {path.relative_to(root).as_posix()}" for path in written]
    lines.append(f"  depends on {requirement.line}")
    use_git = git_available() if args.git is None else args.git
    if use_git:
        if not git_available():
            raise UserError("--git: git is not installed; install it, or pass --no-git")
        message = f"torchstyle new {args.name} --template {args.template}"
        first = f"{message} (torchstyle {requirement.version})"
        lines.append(init_repository(root, first, written))
    lines += [
        "next:",
        f"  cd {shlex.quote(str(root))}",
        "  python train.py --epochs 5 --run-dir runs/first",
        "  python test.py --run-dir runs/first",
    ]
    return CommandOutput(stdout="\n".join(lines) + "\n")
