"""Evaluation over a whole split, exact over any batching; and loading a finished run's model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torchstyle.engine.checkpoint import BEST, LATEST, load_checkpoint, load_model_state
from torchstyle.engine.ema import inference_weights
from torchstyle.engine.metrics import METRIC_INPUTS, EvaluationMetrics
from torchstyle.engine.programs import load_program, replayable
from torchstyle.engine.strategies import Strategy
from torchstyle.errors import UserError
from torchstyle.models import TorchstyleModel, preprocessing
from torchstyle.models.loading import rebuild_for_run
from torchstyle.spec import DataSpec


@torch.no_grad()
def evaluate(
    model: TorchstyleModel,
    loader: Iterable[Any],
    device: torch.device,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    reduce_sum: Callable[[Tensor], Tensor] = lambda t: t,
    gather_objects: Callable[[object], list[object]] = lambda obj: [obj],
    metrics: EvaluationMetrics | None = None,
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
        gather_objects: Every process's object in rank order (a list of one when alone):
            the processes agree on the value names, since a process whose shard is empty
            (fewer samples than processes) has none of its own.
        metrics: torchmetrics fed with the steps' ``preds`` and ``target``; their values
            join the averages (an average of the same name wins: it is exact in float64).

    Returns:
        Metric name to mean value.
    """
    was_training = model.training
    model.on_evaluation_start()
    model.eval()
    if metrics is not None:
        metrics.reset()
    sums: dict[str, Tensor] = {}
    count = torch.zeros((), device=device, dtype=torch.float64)
    try:
        for batch in loader:
            with autocast():
                out = model.evaluation_step(batch)
            if metrics is not None:
                metrics.update(out)
            for k, v in out.items():
                if k in METRIC_INPUTS:
                    continue
                s = v.detach().double().sum()
                sums[k] = sums[k] + s if k in sums else s
            count += model.batch_size_of(batch)
    finally:
        model.train(was_training)
    averages, n = _global_means(sums, count, reduce_sum, gather_objects)
    if metrics is not None and n:
        for name, value in metrics.compute().items():
            averages.setdefault(name, value)  # the float64 averages are exact; keep them
    return averages


def evaluate_split(
    strategy: Strategy,
    model: TorchstyleModel,
    batches: Iterable[Any],
    metrics: EvaluationMetrics | None,
) -> dict[str, float]:
    """A split's metrics as the engine computes them, under ``strategy`` (every process its
    shard, reduced across them); ``Trainer`` and ``torchstyle test`` both call it."""
    strategy.agree_buffers(model)
    return evaluate(
        model,
        batches,
        strategy.device,
        autocast=strategy.autocast,
        reduce_sum=strategy.all_reduce,
        gather_objects=strategy.gather_objects,
        metrics=metrics,
    )


def _global_means(
    sums: dict[str, Tensor],
    count: Tensor,
    reduce_sum: Callable[[Tensor], Tensor],
    gather_objects: Callable[[object], list[object]],
) -> tuple[dict[str, float], float]:
    """Every value's mean over all processes' samples ({} when the split is empty), and the
    number of samples."""
    keys = agreed_keys(sorted(sums), gather_objects)
    zero = torch.zeros((), device=count.device, dtype=torch.float64)
    packed = torch.stack([sums.get(k, zero) for k in keys] + [count])
    totals = reduce_sum(packed).tolist()  # the one sync of the evaluation
    n = totals[-1]
    return ({k: s / n for k, s in zip(keys, totals[:-1], strict=True)} if n else {}), n


def agreed_keys(keys: list[str], gather_objects: Callable[[object], list[object]]) -> list[str]:
    """The sorted union of every process's value names (one gather per evaluation)."""
    every = gather_objects(keys)
    return sorted({str(k) for ks in every if isinstance(ks, list) for k in ks})


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


def load_run_model(
    path: Path, device: torch.device, *, run_dir: Path | None = None
) -> tuple[TorchstyleModel, dict[str, Any]]:
    """Rebuilds a run's model from a checkpoint (its recorded source) and loads its weights.

    Args:
        path: The checkpoint file.
        device: Where to put the model.
        run_dir: The run folder, where a copy of a user's model file lives (default: the
            checkpoint's folder's parent).

    A sharded checkpoint (``--strategy fsdp``) is consolidated: the whole tensors are read from
    its shard folder into the one-process model.

    Returns:
        The model in eval mode on ``device``, and the checkpoint dict.
    """
    state = load_checkpoint(path, map_location="cpu")
    info = state.get("model")
    if not isinstance(info, dict) or "name" not in info:
        raise UserError(f"{path} does not say which model it holds (no 'model' entry)")
    folder = run_dir or path.parent.parent
    record = info.get("source")
    if isinstance(record, dict) and not replayable(record):  # a module given as an instance
        model = load_program(record, folder)
    else:
        model = rebuild_for_run(info, run_spec(state), folder)
    if "shards" in state:
        from torchstyle.engine.fsdp import consolidate

        weights = consolidate(path.parent / str(state["shards"]), model)
    else:
        weights = inference_weights(state)  # --ema-eval: the average
    load_model_state(model, weights, path)
    pre = preprocessing.from_state(state)
    if pre is not None:  # the run's input normalisation
        preprocessing.install(model, pre)
    model.to(device).eval()
    return model, state


def run_spec(state: dict[str, Any]) -> DataSpec:
    """The data spec a checkpoint was trained with."""
    return DataSpec.from_dict(state["spec"])
