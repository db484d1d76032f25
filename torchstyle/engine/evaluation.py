"""Evaluation over a whole split, exact over any batching; and loading a finished run's model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchstyle.engine.checkpoint import BEST, LATEST, load_checkpoint, load_model_state
from torchstyle.errors import UserError
from torchstyle.models import TorchstyleModel, create_model
from torchstyle.spec import DataSpec


@torch.no_grad()
def evaluate(
    model: TorchstyleModel,
    loader: Iterable[Any],
    device: torch.device,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    reduce_sum: Callable[[Tensor], Tensor] = lambda t: t,
) -> dict[str, float]:
    """Averages a model's per-sample evaluation values over a split.

    Runs under ``model.eval()`` and ``torch.no_grad()``, after the model's
    ``on_evaluation_start``. Per-sample values are summed and counted, then (``reduce_sum``)
    reduced across processes, so an uneven last batch or uneven shards weigh exactly right.

    Args:
        model: The model (switched to eval mode and back).
        loader: Batches of the split, already on ``device``.
        device: Where to compute.
        autocast: Factory of the mixed-precision context.
        reduce_sum: Sums a tensor across processes (identity when alone).

    Returns:
        Metric name to mean value.
    """
    was_training = model.training
    model.on_evaluation_start()
    model.eval()
    sums: dict[str, Tensor] = {}
    count = torch.zeros((), device=device, dtype=torch.float64)
    try:
        for batch in loader:
            with autocast():
                out = model.evaluation_step(batch)
            for k, v in out.items():
                s = v.detach().double().sum()
                sums[k] = sums[k] + s if k in sums else s
            count += model.batch_size_of(batch)
    finally:
        model.train(was_training)
    keys = sorted(sums)
    packed = torch.stack([sums[k] for k in keys] + [count])
    totals = reduce_sum(packed).tolist()  # the one sync of the evaluation
    n = totals[-1]
    return {k: s / n for k, s in zip(keys, totals[:-1], strict=True)} if n else {}


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """Resolves ``best``, ``latest`` or a file path for ``torchstyle test/predict``."""
    if which in ("best", "latest"):
        if not run_dir.is_dir():
            raise UserError(
                f"run folder {run_dir} does not exist; pass the folder `torchstyle train` wrote"
            )
        ckpt_dir = run_dir / "checkpoints"
        path = ckpt_dir / (BEST if which == "best" else LATEST)
        if which == "best" and not path.exists():
            path = ckpt_dir / LATEST  # a run without evaluations has no best yet
        if not path.exists():
            raise UserError(f"no checkpoint in {ckpt_dir}; train the run first")
        return path
    return Path(which)


def load_run_model(path: Path, device: torch.device) -> tuple[TorchstyleModel, dict[str, Any]]:
    """Rebuilds a model from a checkpoint (name and constructor arguments) and loads its weights.

    Returns:
        The model in eval mode on ``device``, and the checkpoint dict.
    """
    state = load_checkpoint(path, map_location="cpu")
    info = state.get("model")
    if not isinstance(info, dict) or "name" not in info:
        raise UserError(f"{path} does not say which model it holds (no 'model' entry)")
    model = create_model(info["name"], **info.get("hparams", {}))
    load_model_state(model, state["net"], path)
    model.to(device).eval()
    return model, state


def run_spec(state: dict[str, Any]) -> DataSpec:
    """The data spec a checkpoint was trained with."""
    return DataSpec.from_dict(state["spec"])
