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
  crops at random for training. With pretrained weights' :class:`ResizePolicy`
  (``DataOptions.resize``), the resize, crop and interpolation are the weights'.
"""

from __future__ import annotations

import logging
import os
import statistics
import unicodedata
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch import Tensor
from torch.utils.data import Dataset

from torchstyle.data.augment import AUGMENTS, ResizePolicy, flip_mask, transform_images
from torchstyle.data.base import DataBundle, DataOptions, TensorImageDataset
from torchstyle.data.images import (
    DATASET_HINT,
    IMAGE_EXTENSIONS,
    BackgroundCheck,
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
from torchstyle.data.splits import carve_val, check_fraction, stratified_split
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
    # Names are compared in NFC: macOS writes "café" decomposed (NFD), Linux keeps either.
    wanted = {_nfc(c): i for i, c in enumerate(classes if classes is not None else found)}
    if classes is None:
        _refuse_twins(split_dir, found)
        _refuse_one_level_too_deep(split_dir, found)
    else:
        _refuse_unknown(split_dir, [c for c in found if _nfc(c) not in wanted], classes)
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
            label = wanted[_nfc(name)]
            present.append(name if classes is None else classes[label])
            if classes is not None and name != classes[label]:
                log.info(
                    "%s: class folder %a is train's %a in another Unicode normalisation "
                    "(NFD/NFC); taken as the same class",
                    split_dir,
                    name,
                    classes[label],
                )
            samples.extend((p, label) for p in images)
    if ignored:
        log.warning("%s: ignored %d non-image files", split_dir, ignored)
    if not samples:
        raise UserError(f"{split_dir} holds no images; add images to {split_dir}/<class>/")
    return present, samples


_DATASET_HINT = DATASET_HINT


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def _refuse_unknown(split_dir: Path, extra: list[str], classes: tuple[str, ...]) -> None:
    if extra:
        raise UserError(
            f"{split_dir} has different classes from the training split: "
            f"{', '.join(extra)} (not among {', '.join(classes)}); rename or remove those "
            "folders, or add them to train/ with images"
        )


def _refuse_twins(split_dir: Path, found: list[str]) -> None:
    """Refuses two class folders whose names differ only in Unicode normalisation."""
    seen: dict[str, str] = {}
    for name in found:
        twin = seen.setdefault(_nfc(name), name)
        if twin != name:
            raise UserError(
                f"{split_dir} has two class folders named {name!r} that differ only in Unicode "
                f"normalisation ({twin!a} and {name!a}, NFC and NFD); merge them "
                "into one folder"
            )


def _refuse_one_level_too_deep(split_dir: Path, found: list[str]) -> None:
    """One class folder whose subfolders hold the images: the classes sit one level down."""
    if len(found) != 1:
        return
    inner = class_folders(split_dir / found[0])
    if len(inner) >= 2:
        shown = ", ".join(inner[:4]) + (", ..." if len(inner) > 4 else "")
        raise UserError(
            f"{split_dir} has one class folder, {found[0]}/, whose subfolders ({shown}) look "
            f"like the classes: they sit one level too deep; move them up into {split_dir}/"
        )


def load_image(
    path: Path,
    channels: int,
    image_size: int,
    hint: str = DATASET_HINT,
    resize: ResizePolicy | None = None,
) -> Tensor:
    """Decodes one image, resizes and centre-crops it to a ``(C, S, S)`` float in ``[-1, 1]``
    (as an evaluation split reads it: ``resize`` is the weights' policy, if any)."""
    img = read_image(path, channels, hint)
    return transform_images(
        [img],
        "none",
        image_size,
        seed=0,
        epoch=0,
        index=torch.zeros(1, dtype=torch.long),
        train=False,
        resize=resize,
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
        resize: Pretrained weights' resize, centre crop and interpolation (``crop`` equal
            to ``image_size``); None takes the centred square.

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
        resize: ResizePolicy | None = None,
    ) -> None:
        assert channels in (1, 3), f"channels must be 1 or 3, got {channels}"
        assert augment in AUGMENTS, f"augment must be one of {AUGMENTS}, got {augment!r}"
        self.samples = samples
        self.channels = channels
        self.image_size = image_size
        self.augment = augment
        self.train = train
        self.seed = seed
        self.resize = resize

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        path, label = self.samples[index]
        img = read_image(path, self.channels)
        idx = torch.tensor([index])
        x = transform_images(
            [img], self.augment, self.image_size, self.seed, epoch, idx, self.train, self.resize
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
            resize=self.resize,
        )

    def to_tensor_dataset(self) -> TensorImageDataset:
        """Decodes every image once into memory, for ``--data-on-device``.

        The images are resized and centre-cropped as the stock path does, and kept as uint8
        when no image needed resizing, else as float32: rounding a resized image back to
        uint8 would make its batches differ from the stock path's. The weights' policy
        (``resize``) resamples to uint8 itself, so those are kept as uint8.

        Raises:
            UserError: The policy is ``rrc-flip``, which crops the original images.
        """
        policy = self.augment if self.train else "none"
        if policy == "rrc-flip":
            raise UserError(
                "--augment rrc-flip crops the original images, which --data-on-device does not "
                "keep (it holds them resized); use --augment flip or crop-flip, or drop --data-on-device"
            )
        labels = torch.tensor([label for _, label in self.samples])
        if self.resize is not None:
            held = [self.resize.evaluate(read_image(p, self.channels)) for p, _ in self.samples]
            return TensorImageDataset(torch.stack(held), labels, augment=policy, seed=self.seed)
        images, exact = [], True
        for path, _ in self.samples:
            img = read_image(path, self.channels)
            exact = exact and tuple(img.shape[-2:]) == (self.image_size, self.image_size)
            zero = torch.zeros(1, dtype=torch.long)
            images.append(
                (img, transform_images([img], "none", self.image_size, 0, 0, zero, False)[0])
            )
        stacked = torch.stack([raw if exact else resized for raw, resized in images])
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
) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]], dict[str, str]]:
    """The classes, the samples of every split asked for that is present, and how a test
    split held out of train/ was drawn.

    Only the split folders asked for are listed (train/ also when the validation or test
    split is carved out of it); no image is opened here.
    """
    held_out = bool(options.test_split)
    if held_out and (root / "test").is_dir():
        raise UserError(
            f"{root} has a test/ folder and --test-split {options.test_split} was given; drop "
            "--test-split to use test/, or move test/ away"
        )
    if (root / "val").is_dir() and options.val_split and options.wants("val"):
        raise UserError(
            f"{root} has a val/ folder and --val-split {options.val_split} was given; "
            "drop --val-split to use val/, or move val/ away"
        )
    needs_train = options.wants("train") or options.wants("val") or held_out
    if options.class_names is not None:  # labelled as a run's classes: train/ is optional
        classes = tuple(options.class_names)
        train = _evaluation_split(root, "train", classes, required=False) if needs_train else None
    elif needs_train:
        found, train = scan_split(root / "train")
        classes = tuple(found)
    else:  # the class names are train/'s folder names; its images are not listed
        train, classes = None, tuple(class_folders(_split_folder(root, "train")))
    splits: dict[str, list[tuple[Path, int]]] = {}
    info: dict[str, str] = {}
    if held_out:
        train, splits["test"], info["test"] = _carve_test(train or [], options, root)
    elif options.wants("test"):
        splits["test"] = _evaluation_split(root, "test", classes, required=True) or []
    if options.wants("val"):
        val = _evaluation_split(root, "val", classes, required=False)
        if val is not None:
            splits["val"] = val
    if options.wants("train") or (options.wants("val") and "val" not in splits):
        splits["train"] = train or []
    if not options.wants("test"):
        splits.pop("test", None)
    return classes, splits, info


def _split_folder(root: Path, split: str) -> Path:
    folder = root / split
    if not folder.is_dir():
        raise UserError(f"missing folder {folder}; {_LAYOUT}")
    return folder


#: Up to this many training images are decoded before the first step (all of val and test are).
DECODE_UP_FRONT = 20_000


def _carve_test(
    train: list[tuple[Path, int]], options: DataOptions, root: Path
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]], str]:
    """``--test-split``: a stratified, seeded share of train/ held out as the test split,
    drawn from the listing alone (before any image is read), so that ``torchstyle test``
    draws the same split without decoding the training images."""
    fraction, seed = float(options.test_split or 0.0), options.seed
    check_fraction(fraction)
    labels = torch.tensor([label for _, label in train], dtype=torch.long)
    keep, held = stratified_split(labels, fraction, seed)
    if not len(held) or not len(keep):
        raise UserError(
            f"--test-split {fraction} of the {len(labels)} images in {root / 'train'} leaves "
            f"{len(keep)} to train on and {len(held)} to test; choose another fraction"
        )
    record = (
        f"{len(held)} images held out of {len(labels)} in {root / 'train'} (--test-split "
        f"{fraction:g}, stratified by class, seed {seed})"
    )
    log.info("data: test split: %s", record)
    return [train[i] for i in keep.tolist()], [train[i] for i in held.tolist()], record


def _decide(
    splits: dict[str, list[tuple[Path, int]]], options: DataOptions, checks: list[Any]
) -> tuple[int, int, dict[str, str]]:
    """Channels and image size, and the records of why; drops bad images if asked.

    Every image of val and test, and of train up to :data:`DECODE_UP_FRONT` images, is
    decoded here, before the first step: a truncated file fails now, named, not during
    training or at the final test.

    Raises:
        UserError: Channels asked for that image files cannot be read as (1 or 3).
    """
    if options.channels not in (None, 1, 3):  # a folder's images read as grayscale or RGB
        raise UserError(
            f"image folders are read with 1 (grayscale) or 3 (RGB) channels, not "
            f"{options.channels}; evaluate a run of {options.channels}-channel data on data "
            "of its own kind"
        )
    everything = [p for samples in splits.values() for p, _ in samples]
    decode = [p for name in ("val", "test") for p, _ in splits.get(name, [])]
    train = splits.get("train", [])
    if len(train) <= DECODE_UP_FRONT:
        decode += [p for p, _ in train]
    else:
        log.info(
            "data: train has %d images, more than are decoded up front (%d); their headers "
            "were checked, and a damaged one is named when it is read",
            len(train),
            DECODE_UP_FRONT,
        )
        if not options.skip_bad_images:  # (skipping decodes every image up front)
            checks.append(BackgroundCheck([p for p, _ in train]))
    headers = inspect_images(everything, skip_bad=options.skip_bad_images, decode=decode)
    for name, samples in splits.items():
        kept = [(p, label) for p, label in samples if p in headers]
        warn_skipped(name, len(samples) - len(kept))
        if samples and not kept:
            raise UserError(f"every image in the {name} split is unreadable")
        splits[name] = kept
    channels, why_channels = decide_channels(list(headers.values()), options.channels)
    log.info("data: channels %s", why_channels)
    info = {"channels": why_channels}
    measured = splits.get("train") or [s for samples in splits.values() for s in samples]
    size = options.image_size or _measured_size([headers[p] for p, _ in measured])
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
    resize: ResizePolicy | None


def build_folder(options: DataOptions) -> DataBundle:
    """Data source for a folder path holding ``train/``, ``test/`` and optionally ``val/``.

    Only the splits ``options.splits`` asks for are listed and decoded.

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
    classes, splits, info = _scan(root, options)
    checks: list[Any] = []
    channels, size, decided = _decide(splits, options, checks)
    info.update(decided)
    common: _SplitOptions = {
        "channels": channels,
        "image_size": size,
        "seed": options.seed,
        "augment": options.augment or "flip",
        "resize": options.resize,
    }
    parts: dict[str, Dataset[Any]] = {
        name: ImageFolderDataset(samples, train=name == "train", **common)
        for name, samples in splits.items()
    }
    train, val = parts.get("train"), parts.get("val")
    if val is not None:
        info["val"] = f"{len(splits['val'])} images in {root / 'val'}"
    elif options.val_split and train is not None:
        check_fraction(options.val_split)
        train, val, record = carve_val(train, options.val_split, options.seed, source=str(root))
        info.update(record)
    else:
        info["val"] = "none (no val/ folder; pass --val-split F to hold a fraction of train out)"
    spec = DataSpec(
        channels=channels, image_size=size, num_classes=len(classes), class_names=classes
    )
    return DataBundle(
        train=train, test=parts.get("test"), spec=spec, checks=checks, val=val, info=info
    )
