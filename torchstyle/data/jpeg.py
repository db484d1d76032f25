"""``--decode gpu``: workers only read file bytes; decoding and augmentation run on the device.

The loader's workers return each file's raw bytes. On the device, one batched
``torchvision.io.decode_jpeg`` call decodes the whole batch (nvJPEG on a GPU), then the
policy's crop, resize, flip and normalisation run there too, all inside
:class:`~torchstyle.data.DevicePrefetcher`'s side stream, so they overlap the previous step.
With no GPU the very same code runs on the CPU (slowly), which is how the tests cover it.

Files that are not JPEG (PNG, ...) are decoded in the worker instead; a corrupt file gives
the stock path's error, naming the file, or is skipped and counted with ``--skip-bad-images``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from torchstyle.data.augment import transform_images
from torchstyle.data.folder import ImageFolderDataset, bad_image, read_image

log = logging.getLogger(__name__)

_JPEG_MAGIC = b"\xff\xd8"


@dataclass
class EncodedBatch:
    """A batch as the workers hand it over: bytes (or decoded images) plus keys.

    Attributes:
        data: Per sample, a 1-D uint8 tensor of JPEG bytes, or a decoded ``(C, H, W)`` image.
        labels: ``(B,)`` labels.
        index: ``(B,)`` sample indices (the augmentation keys).
        epoch: The epoch (the augmentation keys).
    """

    data: list[Tensor]
    labels: Tensor
    index: Tensor
    epoch: int


class EncodedImageFolder(Dataset):
    """A class-folder split whose items are file bytes, for decoding on the device.

    Args:
        source: The stock dataset of the same split (paths, labels, channels).
    """

    epoch_aware = True

    def __init__(self, source: ImageFolderDataset) -> None:
        self.samples = source.samples
        self.channels = source.channels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int, int, int]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        path, label = self.samples[index]
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise bad_image(path, e) from None
        if raw[:2] == _JPEG_MAGIC:
            return torch.frombuffer(bytearray(raw), dtype=torch.uint8), label, index, epoch
        return read_image(path, self.channels), label, index, epoch  # not JPEG: decode here


def collate_encoded(items: list[tuple[Tensor, int, int, int]]) -> EncodedBatch:
    """Collates :class:`EncodedImageFolder` items without touching the variable-size bytes."""
    data, labels, index, epochs = zip(*items, strict=True)
    return EncodedBatch(list(data), torch.tensor(labels), torch.tensor(index), epochs[0])


class DecodeOnDevice:
    """Turns an :class:`EncodedBatch` into ``(images, labels)`` on the device.

    Args:
        source: The stock dataset of the split: paths for error messages, channels, size,
            augmentation policy, seed and whether it is a training split.
        device: Where to decode and augment.
        skip_bad_images: Drop unreadable files from the batch (and count them) instead of
            stopping.
    """

    def __init__(
        self, source: ImageFolderDataset, device: torch.device, *, skip_bad_images: bool = False
    ) -> None:
        from torchvision.io import ImageReadMode

        self.source = source
        self.device = device
        self.skip_bad_images = skip_bad_images
        self.mode = ImageReadMode.GRAY if source.channels == 1 else ImageReadMode.RGB
        self.skipped = 0

    def __call__(self, batch: EncodedBatch) -> tuple[Tensor, Tensor]:
        """Decodes, crops, resizes, flips and normalises one batch."""
        images, keep = self._decode(batch)
        index = batch.index[keep]
        x = transform_images(
            images,
            self.source.augment,
            self.source.image_size,
            self.source.seed,
            batch.epoch,
            index,
            self.source.train,
        )
        return x, batch.labels[keep].to(self.device, non_blocking=True)

    def _decode(self, batch: EncodedBatch) -> tuple[list[Tensor], Tensor]:
        from torchvision.io import decode_jpeg

        encoded = [i for i, d in enumerate(batch.data) if d.ndim == 1]
        images: dict[int, Tensor] = {
            i: d.to(self.device) for i, d in enumerate(batch.data) if d.ndim != 1
        }
        try:
            decoded = decode_jpeg(
                [batch.data[i] for i in encoded], mode=self.mode, device=self.device
            )
            images.update(zip(encoded, decoded, strict=True))
        except RuntimeError:
            # One bad file fails the batched call: find it (them) one by one.
            for i in encoded:
                try:
                    images[i] = decode_jpeg(batch.data[i], mode=self.mode, device=self.device)
                except RuntimeError as e:
                    path = self.source.samples[int(batch.index[i])][0]
                    problem = str(e).strip().splitlines()[-1].split(", ")[-1]
                    if not self.skip_bad_images:
                        raise bad_image(path, problem) from None
                    self.skipped += 1
                    log.warning(
                        "skipping unreadable image %s (%s); %d skipped so far",
                        path,
                        problem,
                        self.skipped,
                    )
        keep = sorted(images)
        return [images[i] for i in keep], torch.tensor(keep, dtype=torch.long)


def decode_on_device_loader(
    source: ImageFolderDataset,
    loader_factory: Any,
    device: torch.device,
    *,
    skip_bad_images: bool = False,
) -> tuple[Any, DecodeOnDevice]:
    """Builds the bytes-only loader and its device-side decoder.

    Args:
        source: The stock dataset of the split.
        loader_factory: ``make_loader`` with everything but dataset and collate bound.
        device: Where to decode.
        skip_bad_images: See :class:`DecodeOnDevice`.

    Returns:
        The loader (yielding :class:`EncodedBatch`) and the decoder to run on its batches.
    """
    loader = loader_factory(EncodedImageFolder(source), collate_fn=collate_encoded)
    return loader, DecodeOnDevice(source, device, skip_bad_images=skip_bad_images)
