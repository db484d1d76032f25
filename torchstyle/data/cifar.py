"""CIFAR-10 from a local folder; downloaded only when the user asks (``--download``)."""

from __future__ import annotations

import os

import torch

from torchstyle.data.base import DataBundle, DataOptions, TensorImageDataset
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec


def build_cifar10(options: DataOptions) -> DataBundle:
    """Data source ``cifar10``: the whole set held in memory as ``[-1, 1]`` tensors."""
    from torchvision.datasets import CIFAR10

    root = os.path.expanduser(options.data_dir or "data")
    try:
        train = CIFAR10(root, train=True, download=options.download)
        test = CIFAR10(root, train=False, download=options.download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted."
        raise UserError(
            f"CIFAR-10 not found under {root} ({e}); pass --data-dir to the folder that holds "
            "cifar-10-batches-py, or add --download to fetch it there once"
        ) from None

    def to_tensors(ds: CIFAR10) -> TensorImageDataset:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        x = x.float().div_(127.5).sub_(1.0)
        if options.image_size and options.image_size != 32:
            x = torch.nn.functional.interpolate(x, size=options.image_size, mode="bilinear")
        return TensorImageDataset(x, torch.tensor(ds.targets))

    spec = DataSpec(
        channels=3,
        image_size=options.image_size or 32,
        num_classes=10,
        class_names=tuple(train.classes),
    )
    return DataBundle(train=to_tensors(train), test=to_tensors(test), spec=spec)
