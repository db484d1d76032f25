"""The 8x8 handwritten digits that ship inside scikit-learn: real data that works offline."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from torchstyle.data.base import (
    DataBundle,
    DataOptions,
    TensorImageDataset,
    check_fixed_size_options,
)
from torchstyle.data.splits import DEFAULT_VAL_FRACTION, carve_val
from torchstyle.spec import DataSpec

# A fixed split so that every run, on every machine, tests on the same 360 images.
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits_split(
    image_size: int | None = None, augment: str = "none", seed: int = 0, val_split: float = 0.0
) -> DataBundle:
    """Loads the digits with a fixed, stratified train/test split.

    Args:
        image_size: Resize the 8x8 images to this side (bilinear); None keeps 8.
        augment: Training augmentation policy; digits are not mirror-symmetric, so none.
        seed: Base seed of the augmentation draws and of the validation split.
        val_split: Fraction of the 1,437 training images held out for validation
            (stratified, drawn from ``seed``); the 360 test images never change.

    Returns:
        1,437 training (less validation) and 360 test images, 1 channel, in ``[-1, 1]``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are counts 0..16 of a 4x4 block; scale to [0, 1], then to [-1, 1].
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (N, 8, 8)
    images = images.unsqueeze(1) * 2.0 - 1.0  # (N, 1, 8, 8)
    labels = torch.tensor(digits.target, dtype=torch.long)
    size = image_size or 8
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    train_idx, test_idx = train_test_split(
        range(len(labels)),
        test_size=TEST_FRACTION,
        stratify=labels.numpy(),
        random_state=SPLIT_SEED,
    )
    train_idx_t, test_idx_t = torch.tensor(train_idx), torch.tensor(test_idx)
    spec = DataSpec(
        channels=1, image_size=size, num_classes=10, class_names=tuple(str(i) for i in range(10))
    )
    train: Dataset[Any] = TensorImageDataset(
        images[train_idx_t], labels[train_idx_t], augment=augment, seed=seed
    )
    train, val, info = carve_val(train, val_split, seed, source="digits")
    return DataBundle(
        train=train,
        test=TensorImageDataset(images[test_idx_t], labels[test_idx_t]),
        spec=spec,
        val=val,
        info=info,
    )


def build_digits(options: DataOptions) -> DataBundle:
    """Data source ``digits``: 1,295 training, 142 validation and 360 test images."""
    check_fixed_size_options(options, "digits", channels=1)
    val_split = DEFAULT_VAL_FRACTION if options.val_split is None else options.val_split
    return load_digits_split(options.image_size, options.augment or "none", options.seed, val_split)
