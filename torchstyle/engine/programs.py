"""The inference program kept with a run whose model cannot be built again from its record.

A module given to ``torchstyle.fit`` as an instance (``nn.Sequential``, a class defined in a
notebook) has no constructor that a later process can call. Its run keeps ``model.pt2``: a
``torch.export`` program of the network's ``forward`` in eval mode, batch size free, saved when
training starts. ``torchstyle test``, ``predict`` and ``export`` load it (no pickle: loading
runs no code of the user's) and put the checkpoint's weights into it, so every finished run
can be evaluated, used and shared. Training it further needs the module again: ``--resume``
says so.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchstyle import writes
from torchstyle.errors import UserError
from torchstyle.models.adapters import ClassificationAdapter, unwrap
from torchstyle.models.base import TorchstyleModel

log = logging.getLogger(__name__)

#: The program's file, inside the run folder.
PROGRAM_FILE = "model.pt2"


def replayable(record: dict[str, Any]) -> bool:
    """Whether a model record can build the model again (its source and arguments are known)."""
    return record.get("kind") != "python" and record.get("args") is not None


def what_model(record: dict[str, Any]) -> str:
    """The model's name in messages: ``nn.Sequential`` or the class's name."""
    return str(record.get("attr") or record.get("spec") or "model")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Holds back torch's warnings while tracing, and on a failure its partial graph.

    A trace that fails logs warnings and prints the graph it got so far to stderr (pages of
    it); the caller reports the failure in one line instead. Whatever stderr got during a
    trace that succeeded is written out after it.
    """
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    finally:
        logging.disable(previous)
    sys.stderr.write(held.getvalue())


def trace(net: nn.Module, batch: Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of ``net`` on ``batch``, the batch size left free; torch's logs held back.

    Raises:
        Exception: torch.export's own error when ``net`` cannot be traced.
    """
    with _quiet():
        return torch.export.export(net, (batch,), dynamic_shapes=({0: torch.export.Dim.AUTO},))


def save_program(model: TorchstyleModel, example: Tensor, run_dir: Path) -> str | None:
    """Writes ``run_dir/model.pt2`` for a classifier; returns the file's name (None if not).

    The network is copied to the CPU and traced in eval mode; the copy's weights do not
    matter, every use loads a checkpoint's. A network ``torch.export`` cannot trace is
    reported once: its run trains, and test/predict need the class in a file.
    """
    if not isinstance(model, ClassificationAdapter):
        return None
    net = copy.deepcopy(unwrap(model)).cpu().eval()
    batch = example.detach().cpu()[None].expand(2, *example.shape).contiguous()
    try:
        program = trace(net, batch)
    except Exception as e:  # a network that cannot be traced still trains
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        log.warning(
            "torch.export cannot trace %s (%s); `torchstyle test` and `predict` will need the "
            "class in a .py file (torchstyle.fit(NetClass, model_args=...))",
            type(net).__name__,
            first,
        )
        return None
    path = run_dir / PROGRAM_FILE
    writes.atomic_write(
        path, lambda f: torch.export.save(program, f), fix="or pass another --run-dir"
    )
    return PROGRAM_FILE


def _fixed_mode(module: nn.Module, mode: bool = True) -> nn.Module:
    """``train()`` of a loaded program: it was traced in eval mode and stays so."""
    return module


def load_program(record: dict[str, Any], run_dir: Path) -> TorchstyleModel:
    """The run's classifier around its saved program, ready for a checkpoint's weights.

    Raises:
        UserError: The run has no program (the message says how to record the model instead).
    """
    name = record.get("program")
    path = run_dir / str(name) if name else None
    if path is None or not path.is_file():
        raise UserError(
            f"the run's model {what_model(record)} was given as an instance, and the run folder "
            f"{run_dir} holds no {PROGRAM_FILE} to evaluate it with; export --format safetensors "
            "works from its weights, or train again with torchstyle.fit(NetClass, model_args=...)"
        )
    net = torch.export.load(str(path)).module()
    # The program refuses train()/eval(); the engine switches modes around every evaluation.
    net.train = types.MethodType(_fixed_mode, net)  # type: ignore[method-assign]
    net.eval = types.MethodType(_fixed_mode, net)  # type: ignore[method-assign]
    return ClassificationAdapter(net)


def resume_refusal(record: dict[str, Any], run_dir: Path) -> UserError:
    """The one line that says a run of a module instance resumes from Python only."""
    return UserError(
        f"the run {run_dir} trained a {what_model(record)} instance, which its folder cannot "
        f"build again; resume it from Python with the module: torchstyle.fit(model, "
        f"train_data, val_data, resume={str(run_dir)!r})"
    )


def keep_program(
    model: TorchstyleModel, record: dict[str, Any], train_data: Any, run_dir: Path
) -> dict[str, Any]:
    """The record, naming the run's program: written now for a model that cannot be built
    again (kept when a resume finds one), nothing for the others."""
    if replayable(record):
        return record
    if (run_dir / PROGRAM_FILE).is_file():
        return {**record, "program": PROGRAM_FILE}
    sample = train_data[0] if len(train_data) else None
    image = sample[0] if isinstance(sample, (tuple, list)) else None
    if not isinstance(image, Tensor):
        return record
    name = save_program(model, image, run_dir)
    return {**record, "program": name} if name else record
