"""Random images with learnable labels, for benchmarks and tests."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from torchstyle.data.base import (
    DataBundle,
    DataOptions,
    TensorImageDataset,
    check_fixed_size_options,
)
from torchstyle.data.splits import carve_val
from torchstyle.spec import DataSpec

TRAIN_SIZE = 2048
TEST_SIZE = 512
NUM_CLASSES = 10


def make_synthetic(
    num: int,
    *,
    channels: int = 3,
    image_size: int = 32,
    num_classes: int = 10,
    seed: int = 0,
    augment: str = "none",
) -> TensorImageDataset:
    """Gaussian images whose class shifts the mean of one channel band, so a model can learn it.

    Args:
        num: Number of images.
        channels: Image channels.
        image_size: Image side.
        num_classes: Number of classes.
        seed: Seed of the draw (and of the augmentation draws).
        augment: Augmentation policy (``none``, ``flip`` or ``crop-flip``).

    Returns:
        The dataset, images clamped to ``[-1, 1]``.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (num,), generator=g)
    x = torch.randn(num, channels, image_size, image_size, generator=g) * 0.5
    rows = torch.arange(image_size)
    band = (rows * num_classes // image_size).view(1, 1, image_size, 1)  # (1, 1, H, 1)
    x = x + 0.8 * (band == labels.view(num, 1, 1, 1)).float()
    return TensorImageDataset(x.clamp_(-1, 1), labels, augment=augment, seed=seed)


def build_synthetic(options: DataOptions) -> DataBundle:
    """Data source ``synthetic``: 3x32x32 (or ``image_size``) random images, 10 classes.

    ``--augment`` applies to the training split (none by default); ``--val-split`` holds
    out a validation split (none by default: benchmarks measure the training loop).
    """
    check_fixed_size_options(options, "synthetic", channels=3)
    size = options.image_size or 32
    spec = DataSpec(
        channels=3,
        image_size=size,
        num_classes=NUM_CLASSES,
        class_names=tuple(f"class{i}" for i in range(NUM_CLASSES)),
    )
    train: Dataset[Any] | None = None
    val: Dataset[Any] | None = None
    info: dict[str, Any] = {}
    if options.wants("train") or options.wants("val"):  # each split has its own seed
        whole = make_synthetic(
            TRAIN_SIZE, image_size=size, seed=options.seed, augment=options.augment or "none"
        )
        train, val, info = carve_val(
            whole, options.val_split or 0.0, options.seed, source="synthetic"
        )
    test = None
    if options.wants("test"):
        test = make_synthetic(TEST_SIZE, image_size=size, seed=options.seed + 1)
    return DataBundle(train=train, test=test, spec=spec, val=val, info=info)
