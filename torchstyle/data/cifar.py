"""CIFAR-10 from a local folder; downloaded only when the user asks (``--download``)."""

from __future__ import annotations

import os

import torch

from torchstyle.data.base import (
    DataBundle,
    DataOptions,
    TensorImageDataset,
    check_fixed_size_options,
)
from torchstyle.data.splits import DEFAULT_VAL_FRACTION, carve_val
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec


def build_cifar10(options: DataOptions) -> DataBundle:
    """Data source ``cifar10``: the whole set held in memory as uint8 tensors.

    10% of the 50,000 training images are held out for validation unless ``val_split`` says
    otherwise; the 10,000 test images are the official test set.
    """
    from torchvision.datasets import CIFAR10

    check_fixed_size_options(options, "cifar10", channels=3)

    root = os.path.expanduser(options.data_dir or "data")
    try:
        train = CIFAR10(root, train=True, download=options.download)
        test = CIFAR10(root, train=False, download=options.download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted."
        raise UserError(
            f"CIFAR-10 not found under {root} ({e}); pass --data-dir to the folder that holds "
            "cifar-10-batches-py, or add --download to fetch it there once"
        ) from None

    def to_tensors(ds: CIFAR10, augment: str) -> TensorImageDataset:
        # uint8 in memory: 150 MB for the training set instead of 600 MB as floats.
        x = (
            torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        )  # (N, H, W, C) -> (N, C, H, W)
        if options.image_size and options.image_size != 32:
            x = torch.nn.functional.interpolate(
                x.float(), size=options.image_size, mode="bilinear", antialias=True
            )
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        return TensorImageDataset(x, torch.tensor(ds.targets), augment=augment, seed=options.seed)

    spec = DataSpec(
        channels=3,
        image_size=options.image_size or 32,
        num_classes=10,
        class_names=tuple(train.classes),
    )
    # The usual CIFAR-10 augmentation: pad 4, random 32x32 crop, horizontal flip.
    augment = options.augment or "crop-flip"
    val_split = DEFAULT_VAL_FRACTION if options.val_split is None else options.val_split
    train_split, val, info = carve_val(
        to_tensors(train, augment), val_split, options.seed, source="cifar10"
    )
    return DataBundle(
        train=train_split, test=to_tensors(test, "none"), spec=spec, val=val, info=info
    )
