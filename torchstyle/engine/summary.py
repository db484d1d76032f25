"""The start-up summary: what is about to train, on what, where, logged before the first step.

A user reads it to catch a wrong split, a wrong class count, a model adapted in a way they did
not expect, or a batch size that does not divide, before spending the run on it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from torchstyle.spec import DataSpec


@dataclass
class RunDescription:
    """Everything the summary shows, gathered by the trainer.

    Attributes:
        splits: Split name to dataset (None for a split the run does not have).
        spec: Channels, image size and classes.
        augment: The training augmentation policy.
        model_name: What ``--model`` said (or the class name).
        model_source: Where the model came from (``registered``, ``file /path/net.py``...).
        adapter: The task adapter (``none``, ``own-steps``, ``classification``).
        notes: Adaptations to the data and weights loaded, one line each.
        model: The model, for its parameter counts.
        device: The compute device.
        strategy: ``single``, ``dp`` or ``ddp``, with the number of processes.
        amp: ``off``, ``bf16`` or ``fp16``.
        batch_size: The global batch size.
        accumulate: Micro-batches per optimizer step.
        steps_per_epoch: Optimizer steps per epoch.
        epochs: Epochs to train.
        run_dir: The run folder.
        data_info: How the data source decided (where ``val`` came from, why this size).
    """

    splits: dict[str, Any]
    spec: DataSpec
    augment: str | None
    model_name: str
    model_source: str
    adapter: str
    model: nn.Module
    device: str
    strategy: str
    amp: str
    batch_size: int
    accumulate: int
    steps_per_epoch: int
    epochs: int
    run_dir: Path
    notes: Sequence[str] = field(default_factory=list)
    data_info: dict[str, Any] = field(default_factory=dict)


def _size(dataset: Any) -> str:
    try:
        return f"{len(dataset)} samples"
    except TypeError:  # an iterable dataset without a length
        return "streamed (no length)"


def _classes(spec: DataSpec) -> str:
    if not spec.num_classes:
        return "no labels"
    names = ", ".join(spec.class_names[:10]) + (" ..." if len(spec.class_names) > 10 else "")
    return f"{spec.num_classes} classes ({names})" if names else f"{spec.num_classes} classes"


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1_000_000 else f"{n:,}"


def startup_lines(d: RunDescription) -> list[str]:
    """The summary, one line per fact."""
    params = list(d.model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    splits = ", ".join(f"{name} {_size(ds)}" for name, ds in d.splits.items() if ds is not None)
    lines = [
        f"data:     {splits}",
        f"          {_classes(d.spec)}; {d.spec.describe()}; augmentation {d.augment or 'none'}",
        *(f"          {k}: {v}" for k, v in d.data_info.items() if isinstance(v, str)),
        f"model:    {d.model_name} ({d.model_source}; adapter {d.adapter}); "
        f"{_count(total)} parameters, {_count(trainable)} trainable",
    ]
    lines += [f"          {note}" for note in d.notes]
    lines += [
        f"hardware: {d.device}, strategy {d.strategy}, AMP {d.amp}",
        f"batches:  batch {d.batch_size} x accumulate {d.accumulate}; "
        f"{d.steps_per_epoch} steps per epoch, {d.epochs} epochs",
        f"run:      {d.run_dir}",
    ]
    return lines


def source_text(record: dict[str, Any]) -> str:
    """``registered``, ``torchvision``, ``file /abs/net.py`` (copied), ``module pkg.mod``..."""
    kind = str(record.get("kind", "registered"))
    if kind == "file":
        return f"file {record.get('origin', record.get('target'))}"
    if kind == "module":
        return f"module {record.get('target')}"
    if kind == "python":
        return f"Python object from {record.get('where')}"
    return kind


def result_lines(result: Any, *, data_from_python: bool = False) -> list[str]:
    """The few lines shown at the end of training, by `torchstyle train` and `torchstyle.fit`.

    Args:
        result: The finished run's ``TrainResult``.
        data_from_python: The datasets were Python objects (``torchstyle.fit``), which
            ``torchstyle test`` cannot rebuild: its command then names ``--data``.
    """
    done = f"done: {result.epochs} epochs, {result.steps} steps"
    if result.stop_reason and "--max-steps" in result.stop_reason:  # it may end mid-epoch
        whole = f"{result.epochs} whole epoch{'' if result.epochs == 1 else 's'}"
        done = f"done: {result.steps} steps ({whole})"
    lines = [done + (f" ({result.stop_reason})" if result.stop_reason else "")]
    for split, metrics in (("val", result.val_metrics), ("test", result.metrics)):
        overall = {k: v for k, v in metrics.items() if "/" not in k}  # per-class: TensorBoard
        if overall:
            lines.append(
                f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(overall.items()))
            )
    # A best is named only with its checkpoint on disk (an untrained model has none).
    if result.best_metric and result.best_value is not None and result.best_checkpoint:
        lines.append(
            f"best {result.best_metric}: {result.best_value:.4f} (epoch {result.best_epoch})"
        )
    lines.append(f"run folder:      {result.run_dir}")
    if result.best_checkpoint is not None:
        lines.append(f"best checkpoint: {result.best_checkpoint}")
    quoted = shlex.quote(str(result.run_dir))
    lines.append(f"TensorBoard:     tensorboard --logdir {quoted}")
    if data_from_python:
        lines.append(
            f"evaluate again:  torchstyle test {quoted} --data SOURCE"
            "  (the data came from Python: name a data source or a file.py:function)"
        )
    else:
        lines.append(f"evaluate again:  torchstyle test {quoted}")
    return lines
