"""``torchstyle models``: the registered models with their arguments, and the other sources.

Outside ``torchstyle.models`` so that building the CLI parser does not import torch.
"""

from __future__ import annotations

import argparse
import inspect
import textwrap
from typing import Any

from torchstyle.output import CommandOutput

USAGE = """\
Other models for --model:
  torchvision:NAME          any torchvision classification model, e.g. torchvision:resnet18
                            (list them: torchstyle models --library torchvision)
  timm:NAME                 any timm model, e.g. timm:resnet18 (pip install 'torchstyle[timm]';
                            list them: torchstyle models --library timm --filter 'resnet*')
  path/to/file.py:Name      a class or factory in your file (an nn.Module; plain modules
                            train as classifiers); the run keeps a copy of the file
  package.module:Name       a class or factory importable from PYTHONPATH
Arguments: --model-arg KEY=VALUE (VALUE as JSON), checked against the signature. Input channels
and classes come from the data; --weights FILE initialises, --freeze PREFIX freezes."""


def add_models_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``models`` flags."""
    parser.add_argument(
        "--library",
        choices=("torchvision", "timm"),
        help="list this library's model names instead of the registered models",
    )
    parser.add_argument("--filter", help="with --library: a name pattern such as 'resnet*'")


def run_models(args: argparse.Namespace) -> CommandOutput:
    """Prints the models."""
    if args.library:
        return CommandOutput(stdout="\n".join(library_models(args.library, args.filter)) + "\n")
    return CommandOutput(stdout=describe_registered() + "\n\n" + USAGE + "\n")


def library_models(library: str, pattern: str | None) -> list[str]:
    """Model names of ``torchvision`` (classification) or ``timm``, optionally filtered."""
    import fnmatch

    if library == "torchvision":
        import torchvision.models as tvm

        names = tvm.list_models(module=tvm)
    else:
        from torchstyle.models.sources import optional_import

        names = optional_import("timm").list_models()
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


# Arguments the engine fills in from the data when the user does not pass them.
DATA_ARGS = ("in_channels", "num_classes", "image_size", "out_channels")


def _arguments(cls: type) -> str:
    params = inspect.signature(cls).parameters.values()
    from torchstyle.models.arguments import type_name
    from torchstyle.models.sources import Signature

    types = Signature.of(cls).types
    parts: list[str] = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        text = f"{p.name}: {type_name(types.get(p.name, Any))}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {p.default!r}"
        if p.name in DATA_ARGS:
            text += " (from the data)"
        parts.append(text)
    return ", ".join(parts)


def describe_registered() -> str:
    """One block per registered model: name, first docstring line, arguments."""
    from torchstyle.models import get_model_class, list_models

    blocks = ["Registered models (--model NAME):"]
    for name in list_models():
        cls: Any = get_model_class(name)
        doc = (inspect.getdoc(cls) or "").splitlines()[0] if inspect.getdoc(cls) else ""
        blocks.append(f"  {name:<12} {doc}")
        args = textwrap.wrap(
            _arguments(cls),
            width=96,
            initial_indent=" " * 15 + "args: ",
            subsequent_indent=" " * 21,
        )
        blocks += args
    return "\n".join(blocks)
