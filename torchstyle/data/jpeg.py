"""``--decode gpu``: workers only read file bytes; decoding and augmentation run on the device.

The loader's workers return each file's raw bytes. On the device, one batched
``torchvision.io.decode_jpeg`` call decodes the whole batch (nvJPEG on a GPU), then the
policy's crop, resize, flip and normalisation run there too, all inside
:class:`~torchstyle.data.DevicePrefetcher`'s side stream, so they overlap the previous step.
With no GPU the very same code runs on the CPU (slowly), which is how the tests cover it.

Files that are not JPEG (PNG, ...) are decoded in the worker instead, so a batch of any
composition (all JPEG, mixed, none) works. The worker also reads each JPEG's header: its EXIF
orientation, applied after decoding with the same tensor ops as the stock path, and its
size, so an image over the pixel limit is refused before it reaches the decoder. A corrupt
file gives the stock path's error, naming the file, or is skipped and counted with
``--skip-bad-images``.
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
from torchstyle.data.folder import ImageFolderDataset
from torchstyle.data.images import (
    BadImageError,
    apply_orientation,
    bad_image,
    check_bytes,
    read_image,
)

log = logging.getLogger(__name__)

_JPEG_MAGIC = b"\xff\xd8"


@dataclass
class EncodedBatch:
    """A batch as the workers hand it over: bytes (or decoded images) plus keys.

    Attributes:
        data: Per sample, a 1-D uint8 tensor of JPEG bytes, a decoded ``(C, H, W)`` image,
            or an empty tensor for a file the worker found unreadable (``--skip-bad-images``).
        orientation: ``(B,)`` EXIF orientations of the JPEGs (1 for the others).
        labels: ``(B,)`` labels.
        index: ``(B,)`` sample indices (the augmentation keys).
        epoch: The epoch (the augmentation keys).
    """

    data: list[Tensor]
    orientation: Tensor
    labels: Tensor
    index: Tensor
    epoch: int


class EncodedImageFolder(Dataset[tuple[Tensor, int, int, int, int]]):
    """A class-folder split whose items are file bytes, for decoding on the device.

    Args:
        source: The stock dataset of the same split (paths, labels, channels).
        skip_bad_images: Hand an unreadable file on as an empty tensor (the device side
            drops and counts it) instead of raising.
    """

    epoch_aware = True

    def __init__(self, source: ImageFolderDataset, *, skip_bad_images: bool = False) -> None:
        self.samples = source.samples
        self.channels = source.channels
        self.skip_bad_images = skip_bad_images

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int, int, int, int]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        path, label = self.samples[index]
        try:
            data, orientation = self._read(Path(path))
        except BadImageError as e:
            if not self.skip_bad_images:
                raise
            log.warning("skipping %s", e)
            data, orientation = torch.empty(0, dtype=torch.uint8), 1
        return data, orientation, label, index, epoch

    def _read(self, path: Path) -> tuple[Tensor, int]:
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise bad_image(path, e) from None
        if raw[:2] != _JPEG_MAGIC:  # not JPEG: decoded here, already upright
            return read_image(path, self.channels), 1
        orientation = check_bytes(raw, path)  # the pixel limit, and the EXIF orientation
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8), orientation


def collate_encoded(items: list[tuple[Tensor, int, int, int, int]]) -> EncodedBatch:
    """Collates :class:`EncodedImageFolder` items without touching the variable-size bytes."""
    data, orientation, labels, index, epochs = zip(*items, strict=True)
    return EncodedBatch(
        list(data), torch.tensor(orientation), torch.tensor(labels), torch.tensor(index), epochs[0]
    )


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
        if not images:  # every file of the batch was skipped
            c, s = self.source.channels, self.source.image_size
            return torch.empty(0, c, s, s, device=self.device), batch.labels[:0].to(self.device)
        index = batch.index[keep]
        x = transform_images(
            images,
            self.source.augment,
            self.source.image_size,
            self.source.seed,
            batch.epoch,
            index,
            self.source.train,
            self.source.resize,
        )
        return x, batch.labels[keep].to(self.device, non_blocking=True)

    def _decode(self, batch: EncodedBatch) -> tuple[list[Tensor], Tensor]:
        images: dict[int, Tensor] = {
            i: d.to(self.device) for i, d in enumerate(batch.data) if d.ndim == 3
        }
        self.skipped += sum(d.numel() == 0 for d in batch.data)  # refused by the worker
        encoded = [i for i, d in enumerate(batch.data) if d.ndim == 1 and d.numel() > 0]
        if encoded:  # decode_jpeg refuses an empty list
            self._decode_jpegs(batch, encoded, images)
        keep = sorted(images)
        return [images[i] for i in keep], torch.tensor(keep, dtype=torch.long)

    def _decode_jpegs(
        self, batch: EncodedBatch, encoded: list[int], images: dict[int, Tensor]
    ) -> None:
        """Decodes the JPEGs ``encoded`` of ``batch`` into ``images``, upright."""
        from torchvision.io import decode_jpeg

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
        for i in encoded:
            if i in images:
                images[i] = apply_orientation(images[i], int(batch.orientation[i]))


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
    dataset = EncodedImageFolder(source, skip_bad_images=skip_bad_images)
    loader = loader_factory(dataset, collate_fn=collate_encoded)
    return loader, DecodeOnDevice(source, device, skip_bad_images=skip_bad_images)
