"""The validation split: held out of the training split, stratified by class, fixed by a seed."""

from __future__ import annotations

import logging
from collections.abc import Sized
from typing import Any, cast

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, Subset

from torchstyle.errors import UserError

log = logging.getLogger(__name__)

# Digits and CIFAR-10 hold out this fraction of their training split unless told otherwise.
DEFAULT_VAL_FRACTION = 0.1


def check_fraction(fraction: float) -> None:
    """Refuses a ``--val-split`` outside ``[0, 1)``."""
    if not 0.0 <= fraction < 1.0:
        raise UserError(
            f"--val-split must be a fraction in [0, 1) such as 0.1, got {fraction!r}; "
            "0 holds out no validation split"
        )


def stratified_split(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Splits sample indices into (train, val), ``fraction`` of each class going to val.

    Each class with at least two samples gives at least one to val and keeps at least one.
    The draw depends on ``seed`` and the labels alone.

    Args:
        labels: ``(N,)`` integer labels.
        fraction: Share of each class held out, in ``[0, 1)``.
        seed: Seed of the draw.

    Returns:
        The sorted train and val indices.
    """
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        n = round(fraction * len(members))
        if fraction > 0 and len(members) >= 2:
            n = min(max(n, 1), len(members) - 1)
        val.append(members[:n])
        train.append(members[n:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def labels_of(dataset: Dataset[Any]) -> Tensor:
    """Every label of a map-style dataset: its ``labels``/``targets``, or read item by item."""
    for name in ("labels", "targets"):
        values = getattr(dataset, name, None)
        if values is not None:
            return torch.as_tensor(values, dtype=torch.long)
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        return torch.tensor([label for _, label in samples], dtype=torch.long)
    return torch.tensor(
        [int(dataset[i][1]) for i in range(len(cast(Sized, dataset)))], dtype=torch.long
    )


def _subset(dataset: Dataset[Any], idx: Tensor, *, train: bool) -> Dataset[Any]:
    part: Dataset[Any]
    if hasattr(dataset, "select"):  # the file-backed datasets: a validation split is not augmented
        part = dataset.select(idx.tolist(), train=train)
    elif hasattr(dataset, "subset"):  # the in-memory datasets: a validation split is not augmented
        part = dataset.subset(idx, augment=None if train else "none")
    else:
        part = Subset(dataset, idx.tolist())
    return part


def carve_val(
    train: Dataset[Any], fraction: float, seed: int, *, source: str
) -> tuple[Dataset[Any], Dataset[Any] | None, dict[str, Any]]:
    """Holds out a stratified validation split of ``train``.

    Args:
        train: The training split (map-style, with labels).
        fraction: Share held out, in ``[0, 1)``; 0 holds out nothing.
        seed: Seed of the draw (the run's seed: the same seed gives the same split).
        source: What the data is called, for messages.

    Returns:
        The remaining training split, the validation split (None for ``fraction == 0``),
        and the record of how it was made.

    Raises:
        UserError: The fraction is out of range, the split is iterable, or it leaves no
            training or no validation sample.
    """
    check_fraction(fraction)
    if fraction == 0:
        return train, None, {"val": "none"}
    if isinstance(train, IterableDataset):
        raise UserError(
            f"--val-split needs a map-style training split, but {source}'s is iterable; "
            "return a val split from the data function instead"
        )
    labels = labels_of(train)
    train_idx, val_idx = stratified_split(labels, fraction, seed)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise UserError(
            f"--val-split {fraction} of {source}'s {len(labels)} training samples leaves "
            f"{len(train_idx)} to train on and {len(val_idx)} to validate; choose another fraction"
        )
    record = {
        "val": (
            f"{len(val_idx)} samples held out of {len(labels)} training samples "
            f"({fraction:g}, stratified by class, seed {seed})"
        ),
        "val_split": fraction,
        "val_seed": seed,
    }
    log.info("data: validation split: %s", record["val"])
    return (
        _subset(train, train_idx, train=True),
        _subset(train, val_idx, train=False),
        record,
    )
