"""Building the model of a run: from ``--model`` at the start, from the run folder afterwards.

A run records where its model came from (:func:`torchstyle.models.sources.record`), so
``torchstyle test``, ``predict``, ``export`` and ``train --resume`` rebuild it from the run
folder alone: a registered name, a library model, or the run's copy of the user's file.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from torchstyle.errors import UserError
from torchstyle.models.adapters import adapt
from torchstyle.models.base import TorchstyleModel
from torchstyle.models.sources import (
    ModelSource,
    Signature,
    build,
    rebuild,
    record,
    resolve,
)
from torchstyle.spec import DataSpec

log = logging.getLogger(__name__)


@dataclass
class ModelBuild:
    """A model ready for the engine and what the run records about it.

    Attributes:
        model: The model with the engine's contract (adapted when it needed to be).
        record: Where it came from, its arguments and its adapter (see ``sources.record``).
        notes: What was adapted to the data, one line each.
    """

    model: TorchstyleModel
    record: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def adapter(self) -> str:
        """``none``, ``own-steps`` or ``classification``."""
        return str(self.record.get("adapter", "none"))


def model_defaults(source: ModelSource) -> tuple[int | None, str]:
    """The model's preferred image size and data layout, read before the data is built.

    Library and file models take the data's own size and class folders.
    """
    if source.kind != "registered":
        return None, "classes"
    from torchstyle.models import get_model_class

    cls = get_model_class(source.target)
    return cls.default_image_size, cls.data_layout


def build_for_data(source: ModelSource, args: dict[str, Any], spec: DataSpec) -> ModelBuild:
    """Builds ``--model``, as the run's builder parsed it (``sources.parse_model_spec``), with
    ``--model-arg`` values for the data ``spec`` describes.

    Raises:
        UserError: Unknown model, bad arguments, or a model that does not fit the data.
    """
    built = build(source, spec, args)
    model, adapter = adapt(built.module)
    return ModelBuild(model, record(source, built.args, adapter), built.notes)


def rebuild_for_run(info: dict[str, Any], spec: DataSpec, run_dir: Path) -> TorchstyleModel:
    """Builds the model a checkpoint's ``model`` entry describes, untrained.

    Args:
        info: The checkpoint's ``model`` entry: ``name`` and ``hparams``, and ``source``
            (the record) for runs that have one.
        spec: The run's data spec.
        run_dir: The run folder (a user's file is loaded from its copy there).

    Raises:
        UserError: The model cannot be built again; the message says why and what to do.
    """
    rec = info.get("source")
    if not isinstance(rec, dict):  # runs of registered models before sources were recorded
        from torchstyle.models import create_model

        return create_model(info["name"], **info.get("hparams", {}))
    if rec.get("kind") == "python":
        raise UserError(
            f"the run's model {rec.get('attr')} was defined in {rec.get('where')}, which "
            "cannot be imported again; move the class into a .py file and train with it"
        )
    if rec.get("args") is None:
        raise UserError(
            f"the run's model {rec.get('attr')}'s constructor arguments are unknown; pass "
            "torchstyle.fit the class and model_args= instead of an instance to record them"
        )
    model, _ = adapt(rebuild(rec, spec, run_dir).module)
    return model


def record_for_object(
    model: Any, model_args: dict[str, Any] | None
) -> tuple[nn.Module, dict[str, Any]]:
    """The module and the run record for what ``torchstyle.fit`` was given.

    ``model`` is a ``--model`` string, a class or factory (built with ``model_args``), or an
    instance. For an instance the constructor arguments are read back from attributes of the
    same names when they all exist (``self.hidden = hidden``); otherwise the record says they
    are unknown, and ``torchstyle test`` explains how to record them.
    """
    cls = model if isinstance(model, type) or inspect.isfunction(model) else type(model)
    source, where = _source_of(cls)
    if isinstance(model, nn.Module):
        module, args = model, _guess_args(model)
    else:
        module, args = model(**(model_args or {})), dict(model_args or {})
        if not isinstance(module, nn.Module):
            raise UserError(
                f"{cls.__name__}(...) returned {type(module).__name__}, not an nn.Module"
            )
    if source is None:
        rec = {"kind": "python", "attr": cls.__qualname__, "where": where, "args": args}
    else:
        rec = record(source, args, "")
    return module, rec


def _source_of(obj: Any) -> tuple[ModelSource | None, str]:
    """Where a class or function can be imported from again (None when it cannot)."""
    module_name = getattr(obj, "__module__", "")
    qualname = getattr(obj, "__qualname__", "")
    name = getattr(obj, "model_name", "")
    if name and module_name.startswith("torchstyle.models."):
        return ModelSource("registered", name), module_name
    if "." in qualname or "<" in qualname:
        return None, f"{module_name} (a nested class)"
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if module_name == "__main__" or file is None:
        what = f"the script {file}" if file else "a notebook or interactive session"
        return None, what
    if module_name.startswith("torchstyle_user_"):  # loaded from a file by --model
        return ModelSource("file", str(file), qualname), str(file)
    try:
        resolve(ModelSource("module", module_name, qualname))
    except UserError:
        return ModelSource("file", str(file), qualname), str(file)
    return ModelSource("module", module_name, qualname), module_name


def _guess_args(module: nn.Module) -> dict[str, Any] | None:
    """Constructor arguments read back from same-named attributes; None if any is missing."""
    hparams = getattr(module, "hparams", None)
    if isinstance(module, TorchstyleModel) and callable(hparams) and hparams():
        return dict(hparams())
    sig = Signature.of(type(module))
    params = inspect.signature(type(module)).parameters
    if any(p.kind is p.VAR_POSITIONAL for p in params.values()):  # nn.Sequential(*layers)
        return None
    args: dict[str, Any] = {}
    for n in sig.names:
        if hasattr(module, n) and _json_safe(getattr(module, n)):
            args[n] = getattr(module, n)
        elif params[n].default is inspect.Parameter.empty:
            return None
    return args


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
