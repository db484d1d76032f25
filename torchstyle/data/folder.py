"""The guide's ImageFolder layout: ``ROOT/train/<class>/*.png``, ``ROOT/test/<class>/*.png``
and optionally ``ROOT/val/<class>/*.png``.

The rules, each with a message that names the path and the fix:

* The training split decides the classes: every visible subfolder of ``train/`` is a class
  and must hold images.
* ``test/`` and ``val/`` may lack classes that ``train/`` has (a warning names them; their
  figures cover the other classes), never hold a class that ``train/`` lacks.
* Hidden files and folders (``.`` names) are skipped everywhere; other non-image files are
  counted and skipped.
* Channels are decided from every image's mode (3 if any has colour) unless ``--channels``
  says; every image is converted to them. The image size defaults to the training images'
  median shorter side (at most :data:`MAX_DEFAULT_SIZE`). Both decisions are logged.
* Images are resized (shorter side) and centre-cropped to a square; ``rrc-flip`` instead
  crops at random for training.
"""

from __future__ import annotations

import logging
import os
import statistics
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import Tensor
from torch.utils.data import Dataset

from torchstyle.data.augment import AUGMENTS, flip_mask, transform_images
from torchstyle.data.base import DataBundle, DataOptions, TensorImageDataset
from torchstyle.data.images import (
    DATASET_HINT,
    IMAGE_EXTENSIONS,
    BadImageError,
    ImageHeader,
    bad_image,
    decide_channels,
    inspect_images,
    is_image_file,
    list_files,
    read_image,
    warn_skipped,
)
from torchstyle.data.splits import carve_val, check_fraction
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec

__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "BadImageError",
    "ImageFolderDataset",
    "bad_image",
    "build_folder",
    "is_image_file",
    "keyed_coin",
    "load_image",
    "read_image",
    "scan_split",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
# The default side for folders of large photos: ImageNet's, which CPUs and GPUs both manage.
MAX_DEFAULT_SIZE = 224
_LAYOUT = (
    "a data folder holds train/ and test/ (and optionally val/), each with one folder per class"
)


def class_folders(split_dir: Path) -> list[str]:
    """The visible subfolders of a split folder, sorted."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_of(folder: Path) -> tuple[list[Path], int]:
    files = list_files(folder)
    images = [p for p in files if is_image_file(p)]
    return images, len(files) - len(images)


def scan_split(
    split_dir: Path, classes: tuple[str, ...] | None = None
) -> tuple[list[str], list[tuple[Path, int]]]:
    """Lists the classes and images of one split folder.

    Args:
        split_dir: ``ROOT/train``, ``ROOT/val`` or ``ROOT/test``.
        classes: The classes that label the samples (the training split's). None makes the
            folder's own class folders the classes, each of which must hold images.

    Returns:
        The classes that have images, and ``(path, label)`` pairs sorted by class and path.

    Raises:
        UserError: The folder is missing or has no images; a class folder of a training
            split holds none; an evaluation split has a class the labels lack.
    """
    if not split_dir.is_dir():
        raise UserError(f"missing folder {split_dir}; {_LAYOUT}")
    found = class_folders(split_dir)
    if not found:
        raise UserError(
            f"{split_dir} has no class folders; put each class's images in {split_dir}/<class>/"
        )
    if classes is not None:
        extra = [c for c in found if c not in classes]
        if extra:
            raise UserError(
                f"{split_dir} has different classes from the training split: "
                f"{', '.join(extra)} (not among {', '.join(classes)}); rename or remove those "
                "folders, or add them to train/ with images"
            )
    samples: list[tuple[Path, int]] = []
    present, ignored = [], 0
    for name in found:
        images, others = _images_of(split_dir / name)
        ignored += others
        if not images and classes is None:
            raise UserError(
                f"class folder {split_dir / name} holds no images "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder"
            )
        if images:
            present.append(name)
            label = found.index(name) if classes is None else classes.index(name)
            samples.extend((p, label) for p in images)
    if ignored:
        log.warning("%s: ignored %d non-image files", split_dir, ignored)
    if not samples:
        raise UserError(f"{split_dir} holds no images; add images to {split_dir}/<class>/")
    return present, samples


_DATASET_HINT = DATASET_HINT


def load_image(path: Path, channels: int, image_size: int, hint: str = DATASET_HINT) -> Tensor:
    """Decodes one image, resizes and centre-crops it to a ``(C, S, S)`` float in ``[-1, 1]``."""
    img = read_image(path, channels, hint)
    return transform_images(
        [img],
        "none",
        image_size,
        seed=0,
        epoch=0,
        index=torch.zeros(1, dtype=torch.long),
        train=False,
    )[0]


class ImageFolderDataset(Dataset[tuple[Tensor, int]]):
    """One split of an image folder.

    Args:
        samples: ``(path, label)`` pairs.
        channels: 1 to read grayscale, 3 for RGB (every image is converted).
        image_size: Side length of the images it yields.
        augment: Augmentation policy of ``torchstyle.data.augment`` (training splits).
        train: Augment (an evaluation split is only resized and centre-cropped).
        seed: Base seed of the augmentation draws, which are keyed on ``(seed, epoch, index)``
            so they do not depend on worker count or on where a resumed run restarted.

    Being ``epoch_aware``, it takes ``(index, epoch)`` keys from
    :class:`~torchstyle.data.EpochBatchSampler` (plain indices mean epoch 0): persistent
    workers hold their own copy of the dataset, so the epoch must travel with the key.
    """

    epoch_aware = True

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        *,
        channels: int,
        image_size: int,
        augment: str = "flip",
        train: bool = True,
        seed: int = 0,
    ) -> None:
        assert channels in (1, 3), f"channels must be 1 or 3, got {channels}"
        assert augment in AUGMENTS, f"augment must be one of {AUGMENTS}, got {augment!r}"
        self.samples = samples
        self.channels = channels
        self.image_size = image_size
        self.augment = augment
        self.train = train
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        path, label = self.samples[index]
        img = read_image(path, self.channels)
        idx = torch.tensor([index])
        x = transform_images(
            [img], self.augment, self.image_size, self.seed, epoch, idx, self.train
        )
        return x[0], label

    def select(self, indices: list[int], *, train: bool) -> ImageFolderDataset:
        """The samples ``indices`` as a split of their own (``train`` says whether it augments)."""
        return ImageFolderDataset(
            [self.samples[i] for i in indices],
            channels=self.channels,
            image_size=self.image_size,
            augment=self.augment,
            train=train,
            seed=self.seed,
        )

    def to_tensor_dataset(self) -> TensorImageDataset:
        """Decodes every image once into memory, for ``--data-on-device``.

        The images are resized and centre-cropped as the stock path does, and kept as uint8
        when no image needed resizing, else as float32: rounding a resized image back to
        uint8 would make its batches differ from the stock path's.

        Raises:
            UserError: The policy is ``rrc-flip``, which crops the original images.
        """
        policy = self.augment if self.train else "none"
        if policy == "rrc-flip":
            raise UserError(
                "--augment rrc-flip crops the original images, which --data-on-device does not "
                "keep (it holds them resized); use --augment flip or crop-flip, or drop --data-on-device"
            )
        images, exact = [], True
        for path, _ in self.samples:
            img = read_image(path, self.channels)
            exact = exact and tuple(img.shape[-2:]) == (self.image_size, self.image_size)
            zero = torch.zeros(1, dtype=torch.long)
            images.append(
                (img, transform_images([img], "none", self.image_size, 0, 0, zero, False)[0])
            )
        stacked = torch.stack([raw if exact else resized for raw, resized in images])
        labels = torch.tensor([label for _, label in self.samples])
        return TensorImageDataset(stacked, labels, augment=policy, seed=self.seed)


def keyed_coin(seed: int, epoch: int, index: int) -> bool:
    """A fair coin drawn from ``(seed, epoch, index)`` alone: no RNG state, same in any worker,
    and the same flip the batched device path draws for this sample."""
    return bool(flip_mask(seed, epoch, torch.tensor(index)))


def _evaluation_split(
    root: Path, split: str, classes: tuple[str, ...], *, required: bool
) -> list[tuple[Path, int]] | None:
    split_dir = root / split
    if not split_dir.is_dir() and not required:
        return None
    present, samples = scan_split(split_dir, classes)
    missing = [c for c in classes if c not in present]
    if missing:
        log.warning(
            "%s has no images of class(es) %s; its figures cover the other classes only "
            "(add images to %s/<class>/ to include them)",
            split_dir,
            ", ".join(missing),
            split_dir,
        )
    return samples


def _scan(
    root: Path, options: DataOptions
) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]]]:
    """The classes and the samples of every split present."""
    if options.class_names is not None:  # labelled as a run's classes: train/ is optional
        classes = tuple(options.class_names)
        train = _evaluation_split(root, "train", classes, required=False)
    else:
        found, train = scan_split(root / "train")
        classes = tuple(found)
    splits = {"train": train or []}
    splits["test"] = _evaluation_split(root, "test", classes, required=True) or []
    val = _evaluation_split(root, "val", classes, required=False)
    if val is not None:
        if options.val_split:
            raise UserError(
                f"{root} has a val/ folder and --val-split {options.val_split} was given; "
                "drop --val-split to use val/, or move val/ away"
            )
        splits["val"] = val
    return classes, splits


def _decide(
    splits: dict[str, list[tuple[Path, int]]], options: DataOptions
) -> tuple[int, int, dict[str, str]]:
    """Channels and image size, and the records of why; drops bad images if asked.

    Raises:
        UserError: Channels asked for that image files cannot be read as (1 or 3).
    """
    if options.channels not in (None, 1, 3):  # a folder's images read as grayscale or RGB
        raise UserError(
            f"image folders are read with 1 (grayscale) or 3 (RGB) channels, not "
            f"{options.channels}; evaluate a run of {options.channels}-channel data on data "
            "of its own kind"
        )
    need = options.skip_bad_images or options.channels is None or options.image_size is None
    if not need:
        return options.channels or 3, options.image_size or 1, {}
    everything = [p for samples in splits.values() for p, _ in samples]
    headers = inspect_images(everything, skip_bad=options.skip_bad_images)
    for name, samples in splits.items():
        kept = [(p, label) for p, label in samples if p in headers]
        warn_skipped(name, len(samples) - len(kept))
        if samples and not kept:
            raise UserError(f"every image in the {name} split is unreadable")
        splits[name] = kept
    channels, why_channels = decide_channels(list(headers.values()), options.channels)
    log.info("data: channels %s", why_channels)
    info = {"channels": why_channels}
    size = options.image_size or _measured_size(
        [headers[p] for p, _ in splits["train"] or splits["test"]]
    )
    if options.image_size is None:
        info["image_size"] = (
            f"{size} (median shorter side of the images, at most {MAX_DEFAULT_SIZE}; "
            "pass --image-size to change it)"
        )
        log.info("data: image size %s", info["image_size"])
    return channels, size, info


def _measured_size(headers: list[ImageHeader]) -> int:
    return min(MAX_DEFAULT_SIZE, int(statistics.median(min(h.width, h.height) for h in headers)))


class _SplitOptions(TypedDict):
    """The constructor arguments every split of a folder shares."""

    channels: int
    image_size: int
    seed: int
    augment: str


def build_folder(options: DataOptions) -> DataBundle:
    """Data source for a folder path holding ``train/``, ``test/`` and optionally ``val/``.

    Raises:
        UserError: The folder or a split is missing or malformed; the message names the fix.
    """
    root = Path(os.path.expanduser(options.name))
    if not root.is_dir():
        raise UserError(
            f"data folder {root} does not exist; if it moved, pass --data NEW_PATH (where it is "
            "now); otherwise --data digits, --data cifar10, or a folder with train/ and test/ "
            "subfolders of class folders"
        )
    classes, splits = _scan(root, options)
    channels, size, info = _decide(splits, options)
    common: _SplitOptions = {
        "channels": channels,
        "image_size": size,
        "seed": options.seed,
        "augment": options.augment or "flip",
    }
    train: Dataset[Any] = ImageFolderDataset(splits["train"], train=True, **common)
    val: Dataset[Any] | None = None
    if "val" in splits:
        val = ImageFolderDataset(splits["val"], train=False, **common)
        info["val"] = f"{len(val)} images in {root / 'val'}"
    elif options.val_split:
        check_fraction(options.val_split)
        train, val, record = carve_val(train, options.val_split, options.seed, source=str(root))
        info.update(record)
    else:
        info["val"] = "none (no val/ folder; pass --val-split F to hold a fraction of train out)"
    spec = DataSpec(
        channels=channels, image_size=size, num_classes=len(classes), class_names=classes
    )
    return DataBundle(
        train=train,
        test=ImageFolderDataset(splits["test"], train=False, **common),
        spec=spec,
        val=val,
        info=info,
    )
