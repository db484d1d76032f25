"""Dataset plumbing shared by every source: options, the bundle a source returns, and a
tensor-backed dataset that hands out whole batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset

from torchstyle.spec import DataSpec


@dataclass(frozen=True)
class DataOptions:
    """What the engine tells a data source.

    Attributes:
        name: ``digits``, ``cifar10``, ``synthetic`` or a folder path.
        data_dir: Where a named dataset lives on disk (CIFAR-10).
        image_size: Side length to resize to; None keeps the source's own size.
        skip_bad_images: Drop unreadable images (counted and reported) instead of failing.
        download: Allow downloading a named dataset that is missing (CIFAR-10 only).
        seed: Seeds anything random in building the datasets (splits, synthetic data).
        layout: How a folder is organised: ``classes`` (one subfolder per class, the guide's
            ImageFolder layout) or ``paired`` (A|B image pairs side by side, pix2pix style).
    """

    name: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    skip_bad_images: bool = False
    download: bool = False
    seed: int = 0
    layout: str = "classes"


@dataclass
class DataBundle:
    """A train split, a test split and what a model needs to know about them."""

    train: Dataset
    test: Dataset
    spec: DataSpec


class TensorImageDataset(Dataset):
    """Images and labels held as two tensors.

    ``__getitems__`` returns a whole batch with one indexing op; loaders built by
    :func:`torchstyle.data.make_loader` use it and skip per-sample collation.

    Args:
        images: ``(N, C, H, W)`` float images in ``[-1, 1]``.
        labels: ``(N,)`` int64 labels.
    """

    batched = True

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        assert images.ndim == 4, f"images must be (N, C, H, W), got {tuple(images.shape)}"
        assert labels.shape == images.shape[:1], "one label per image"
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx], self.labels[idx]
