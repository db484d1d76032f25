"""``--data-on-device``: the whole dataset in device memory, batches made by device ops.

For datasets that fit (digits, CIFAR-10, small folders). Shuffling is one permutation per
epoch copied to the device; each batch is an index op, and augmentation (crop, flip,
normalisation) runs batched on the device with draws keyed on ``(seed, epoch, index)``.
No workers, no per-sample Python, and the batches are the stock path's batches: a folder is
held resized and centre-cropped, as uint8 when no image needed resizing, else as float32
(rounding a resized image back to uint8 would change it). ``rrc-flip`` is refused: it crops
the original images, which are not kept.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from torchstyle.data.base import TensorImageDataset
from torchstyle.data.loaders import EpochBatchSampler


class DeviceBatches:
    """Iterates the batches of one split from device memory.

    Args:
        dataset: The split, as tensors (uint8 or float images).
        sampler: Decides the order and the batches (and, after a resume, where to start).
        device: Where the data lives and the batches are made.
    """

    def __init__(
        self, dataset: TensorImageDataset, sampler: EpochBatchSampler, device: torch.device
    ) -> None:
        self.sampler = sampler
        self.device = device
        # A device-resident copy with the same augmentation policy and seed.
        self.data = TensorImageDataset(
            dataset.images.to(device),
            dataset.labels.to(device),
            augment=dataset.augment,
            seed=dataset.seed,
        )

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.sampler.epoch_order().to(self.device, non_blocking=True)
        epoch = self.sampler.epoch
        for start, end in self.sampler.batch_bounds():
            yield self.data.batch(order[start:end], epoch)
