"""``torchstyle`` command line: parse, then call the library. Nothing imports this module.

Each subcommand lives with its feature and exposes ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them together and turns user errors into a
one-line message with exit code 2.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

# subcommand -> (module, help). Modules are imported lazily so `torchstyle lint` never loads torch.
_COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "torchstyle.commands",
        "train a model (the guide's training loop, done right)",
    ),
    "test": (
        "torchstyle.commands",
        "evaluate a finished run's checkpoint on the test split",
    ),
    "predict": (
        "torchstyle.commands",
        "predict with a finished run: labels, samples, translations or text",
    ),
    "models": ("torchstyle.models_command", "list the models --model takes, with their arguments"),
    "export": (
        "torchstyle.export",
        "write a run's best weights as safetensors or a torch.export program",
    ),
    "lint": ("torchstyle.lint.command", "find the style guide's don'ts in PyTorch code"),
    "lsp": (
        "torchstyle.lint.lsp",
        "the linter as a language server for editors (stdio; needs torchstyle[lsp])",
    ),
    "new": ("torchstyle.scaffold.command", "start a project in the guide's file layout"),
    "runs": ("torchstyle.experiments.command", "compare run folders: status, flags, metrics"),
    "sweep": ("torchstyle.experiments.command", "search hyperparameters with Optuna"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Returns the top-level parser with one sub-parser per subcommand.

    Args:
        command: Build only this subcommand's flags (the others are listed, not loaded), so
            that ``torchstyle lint`` never imports what ``train`` needs (torch, the model
            registry that its help lists). None builds every subcommand's.
    """
    import argparse

    from torchstyle import __version__

    parser = argparse.ArgumentParser(
        prog="torchstyle",
        description="The PyTorch style guide as working software.",
        allow_abbrev=False,  # `--channels 1` must never be read as `--channels-last`
    )
    parser.add_argument("--version", action="version", version=f"torchstyle {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        if command is None or name == command:
            module = importlib.import_module(module_name)
            getattr(module, f"add_{name}_arguments")(p)
            p.set_defaults(_run=getattr(module, f"run_{name}"))
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is one), if any."""
    return next((a for a in argv if a in _COMMANDS), None)


def _one_line(message: str) -> str:
    # An error raised in a DataLoader worker comes back wrapped with the worker's traceback;
    # its own message is the last line, after "module.ErrorClass: ".
    if "\nOriginal Traceback" in message:
        last = message.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return message


def _rank() -> int:
    """This process's rank under torchrun (0 alone)."""
    return int(os.environ.get("RANK", "0") or 0)


def _error_prefix(error: BaseException) -> str | None:
    """How this process prints ``error`` under torchrun: ``""``, ``"[rank N] "``, or None (not
    at all), so that an error every rank raised alike is printed once, by rank 0.

    Alike: raised before the processes joined (it came from the same flags and files), or
    marked as agreed. Any other error is this rank's own and carries its rank.
    """
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return ""
    dist = sys.modules.get("torch.distributed")
    joined = dist is not None and dist.is_available() and dist.is_initialized()
    if not joined or getattr(error, "same_on_every_rank", False):
        return "" if _rank() == 0 else None
    return f"[rank {_rank()}] "


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the process exit code."""
    try:
        code = _main(argv)
        if not sys.stdout.closed:  # a language server closes it when its client leaves
            sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`torchstyle lint - | head -3`): stop quietly, as cat does.
        # Later writes, the interpreter's last flush included, go nowhere.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by it


def _main(argv: Sequence[str] | None) -> int:
    from torchstyle import writes
    from torchstyle.errors import UserError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["lint"]:
        from torchstyle.lint import fast

        code = fast.run(argv[1:])  # files the cache holds: answered before argparse loads
        if code is not None:
            return code
    parser = build_parser(_command_of(argv) or "")
    # Under torchrun every rank parses the same command line: rank 0 alone reports a bad flag.
    quiet = contextlib.redirect_stderr(io.StringIO()) if _rank() > 0 else contextlib.nullcontext()
    with quiet:
        args = parser.parse_args(argv)
    try:
        result = args._run(args)
    except UserError as e:
        prefix = _error_prefix(e)
        if prefix is not None:
            print(f"{prefix}torchstyle {args.command}: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        raise
    except Exception as e:
        # A write that failed outside torchstyle.writes (a library's own files, a database).
        folder = next(
            (getattr(args, a) for a in ("dir", "run_dir", "output") if getattr(args, a, None)), None
        )
        found = writes.explain(e, getattr(e, "filename", None) or folder or "a file")
        if found is None:
            raise
        if _rank() == 0:
            print(f"torchstyle {args.command}: error: {_one_line(str(found))}", file=sys.stderr)
        return found.exit_code
    except KeyboardInterrupt:
        if _rank() == 0:
            print(f"torchstyle {args.command}: interrupted", file=sys.stderr)
        return 130
    if isinstance(result, int) or result is None:
        return int(result or 0)
    from torchstyle.output import CommandOutput  # what `train` & co. return (lint returns an int)

    if isinstance(result, CommandOutput):
        if result.stdout:
            sys.stdout.write(result.stdout)
        if result.stderr:
            sys.stderr.write(result.stderr)
        return result.code
    return int(result or 0)
