"""The guide's ImageFolder layout: ``ROOT/train/<class>/*.png`` and ``ROOT/test/<class>/*.png``.

Every way this layout goes wrong gets an error that names the path and the fix; nothing is
dropped silently unless the user asked for it (``--skip-bad-images``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from torchstyle.data.augment import AUGMENTS, flip_mask, transform_images
from torchstyle.data.base import DataBundle, DataOptions, TensorImageDataset
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
SPLITS = ("train", "test")


class BadImageError(UserError):
    """An image file that cannot be decoded. The message names the file and the fix."""


def is_image_file(path: Path) -> bool:
    """True for a file whose extension is a known image type."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def scan_split(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Lists the classes and images of one split folder.

    Args:
        split_dir: ``ROOT/train`` or ``ROOT/test``.

    Returns:
        The sorted class names and ``(path, label)`` pairs, sorted by path.

    Raises:
        UserError: The folder is missing, has no class folders, or a class folder holds no image.
    """
    if not split_dir.is_dir():
        raise UserError(
            f"missing folder {split_dir}; a data folder needs train/ and test/ subfolders, "
            "each with one folder per class"
        )
    classes = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not classes:
        raise UserError(
            f"{split_dir} has no class folders; put each class's images in {split_dir}/<class>/"
        )
    samples: list[tuple[Path, int]] = []
    ignored = 0
    for label, name in enumerate(classes):
        files = sorted(p for p in (split_dir / name).rglob("*") if p.is_file())
        images = [p for p in files if is_image_file(p)]
        ignored += len(files) - len(images)
        if not images:
            raise UserError(
                f"class folder {split_dir / name} holds no images "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder"
            )
        samples.extend((p, label) for p in images)
    if ignored:
        log.warning("%s: ignored %d non-image files", split_dir, ignored)
    return classes, samples


_DATASET_HINT = "fix or delete the file, or pass --skip-bad-images to skip unreadable images"


def bad_image(path: Path, problem: object, hint: str = _DATASET_HINT) -> BadImageError:
    """The one error every decoding path raises for an unreadable image."""
    return BadImageError(f"cannot read image {path}: {problem}; {hint}")


def read_image(path: Path, channels: int, hint: str = _DATASET_HINT) -> Tensor:
    """Decodes one image at full size to a ``(C, H, W)`` uint8 tensor.

    Args:
        path: The image file.
        channels: 1 reads grayscale, 3 RGB.
        hint: The fix the error message suggests.

    Raises:
        BadImageError: The file is not a readable image (corrupt, truncated, not an image).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            w, h = img.size
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise bad_image(path, e, hint) from None
    return data.view(h, w, channels).permute(2, 0, 1)  # (H, W, C) -> (C, H, W)


def load_image(path: Path, channels: int, image_size: int, hint: str = _DATASET_HINT) -> Tensor:
    """Decodes one image and resizes it to a ``(C, S, S)`` float tensor in ``[-1, 1]``."""
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


class ImageFolderDataset(Dataset):
    """One split of an image folder.

    Args:
        samples: ``(path, label)`` pairs.
        channels: 1 to read grayscale, 3 for RGB.
        image_size: Side length of the images it yields.
        augment: Augmentation policy of ``torchstyle.data.augment`` (training splits).
        train: Augment (a test split is only resized).
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

    def to_tensor_dataset(self) -> TensorImageDataset:
        """Decodes every image once into memory (uint8), for ``--data-on-device``."""
        images = []
        for path, _ in self.samples:
            img = read_image(path, self.channels)
            img = transform_images(
                [img], "none", self.image_size, 0, 0, torch.zeros(1, dtype=torch.long), False
            )
            images.append(((img[0] + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8))
        labels = torch.tensor([label for _, label in self.samples])
        policy = self.augment if self.train else "none"
        if policy == "rrc-flip":  # images are already at their final size in memory
            policy = "flip"
        return TensorImageDataset(torch.stack(images), labels, augment=policy, seed=self.seed)


def keyed_coin(seed: int, epoch: int, index: int) -> bool:
    """A fair coin drawn from ``(seed, epoch, index)`` alone: no RNG state, same in any worker,
    and the same flip the batched device path draws for this sample."""
    return bool(flip_mask(seed, epoch, torch.tensor(index)))


def _drop_bad(samples: list[tuple[Path, int]], channels: int, split: str) -> list[tuple[Path, int]]:
    good = []
    for path, label in samples:
        try:
            read_image(path, channels)
        except BadImageError as e:
            log.warning("skipping %s", e)
            continue
        good.append((path, label))
    skipped = len(samples) - len(good)
    if skipped:
        log.warning("%s: skipped %d unreadable images (--skip-bad-images)", split, skipped)
    return good


def _guess_channels(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return 1 if img.mode in ("1", "L", "I;16", "I", "F") else 3
    except OSError:
        return 3


def build_folder(options: DataOptions) -> DataBundle:
    """Data source for a folder path holding ``train/`` and ``test/``."""
    root = Path(os.path.expanduser(options.name))
    if not root.is_dir():
        raise UserError(
            f"data folder {root} does not exist; pass --data digits, --data cifar10, or a folder "
            "with train/ and test/ subfolders of class folders"
        )
    train_classes, train_samples = scan_split(root / "train")
    test_classes, test_samples = scan_split(root / "test")
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise UserError(
            f"train/ and test/ of {root} have different classes (only in train: {only_train or '-'}; "
            f"only in test: {only_test or '-'}); give both splits the same class folders"
        )
    channels = _guess_channels(train_samples[0][0])
    size = options.image_size or 32
    if options.skip_bad_images:
        train_samples = _drop_bad(train_samples, channels, "train")
        test_samples = _drop_bad(test_samples, channels, "test")
        for split, samples in (("train", train_samples), ("test", test_samples)):
            if not samples:
                raise UserError(f"every image in {root / split} is unreadable")
    spec = DataSpec(
        channels=channels,
        image_size=size,
        num_classes=len(train_classes),
        class_names=tuple(train_classes),
    )
    common = {
        "channels": channels,
        "image_size": size,
        "seed": options.seed,
        "augment": options.augment or "flip",
    }
    return DataBundle(
        train=ImageFolderDataset(train_samples, train=True, **common),
        test=ImageFolderDataset(test_samples, train=False, **common),
        spec=spec,
    )
