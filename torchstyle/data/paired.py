"""The pix2pix layout: ``ROOT/train/*.png`` and ``ROOT/test/*.png``, each file an A|B pair.

Every image holds the input A (left half) and the target B (right half) side by side, so it is
twice as wide as high, as the pix2pix datasets (facades, maps, edges2shoes, ...) come. Every way
this layout goes wrong gets an error that names the path and the fix; unreadable images are
dropped only when the user asked for it (``--skip-bad-images``), and then counted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from torchstyle.data.base import DataBundle, DataOptions
from torchstyle.data.folder import IMAGE_EXTENSIONS, SPLITS, BadImageError, keyed_coin
from torchstyle.data.images import decide_channels, list_files, open_image, read_header
from torchstyle.data.splits import carve_val
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec

log = logging.getLogger(__name__)

# What PIL raises on a file it cannot decode (unknown format, truncated or corrupt data).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError)
# folder.load_image's wording, so both layouts read the same to the user.
_SKIP_HINT = "fix or delete the file, or pass --skip-bad-images to skip unreadable images"
_LAYOUT_HINT = (
    "a paired data folder holds train/ and test/ subfolders of A|B images: the input A on the "
    "left half, the target B on the right half, each image twice as wide as high"
)

# A dataset key: a plain index (epoch 0) or the ``(index, epoch)`` pair EpochBatchSampler yields.
Key = int | tuple[int, int]


def scan_pairs(split_dir: Path) -> list[Path]:
    """Lists the image files of one split folder (recursively), sorted by path.

    Args:
        split_dir: ``ROOT/train`` or ``ROOT/test``.

    Returns:
        The image paths.

    Raises:
        UserError: The folder is missing or holds no image.
    """
    if not split_dir.is_dir():
        raise UserError(f"missing folder {split_dir}; {_LAYOUT_HINT}")
    files = list_files(split_dir)  # hidden files and folders skipped
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        raise UserError(
            f"{split_dir} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); add A|B pair "
            "images (input left, target right, width = 2 x height)"
        )
    if len(files) > len(images):
        log.warning("%s: ignored %d non-image files", split_dir, len(files) - len(images))
    return images


def _bad_image(path: Path, error: Exception) -> BadImageError:
    return BadImageError(f"cannot read image {path}: {error}; {_SKIP_HINT}")


def _not_a_pair(path: Path, width: int, height: int) -> UserError:
    return UserError(
        f"image {path} is {width}x{height} (width x height), not twice as wide as high; "
        f"{_LAYOUT_HINT}: crop or remove it"
    )


def _check_pair(path: Path, *, decode: bool) -> str:
    """Checks that ``path`` is an A|B image (width = 2 x height); returns its PIL mode.

    Args:
        path: The image file.
        decode: Decode the pixels too; without it only the header is read, which misses a
            truncated file but costs a few microseconds instead of a full decode.

    Raises:
        BadImageError: The file cannot be read.
        UserError: The image is not twice as wide as high.
    """
    with open_image(path, path, _SKIP_HINT) as img:
        if decode:
            img.load()
        width, height = img.size
        mode: str = img.mode
    if width != 2 * height:
        raise _not_a_pair(path, width, height)
    return mode


def load_pair(path: Path, channels: int, image_size: int) -> tuple[Tensor, Tensor]:
    """Decodes one A|B image into two ``(C, S, S)`` float tensors in ``[-1, 1]``.

    Each half is resized on its own, so no pixel of A bleeds into B at the seam.

    Args:
        path: The image file, twice as wide as high.
        channels: 1 reads grayscale, 3 RGB.
        image_size: Side S each half is resized to (bilinear).

    Returns:
        ``(a, b)``: the left and the right half.

    Raises:
        BadImageError: The file is not a readable image.
        UserError: The image is not twice as wide as high.
    """
    from PIL import Image

    halves = []
    try:
        with open_image(path, path, _SKIP_HINT) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            width, height = img.size
            if width != 2 * height:
                raise _not_a_pair(path, width, height)
            for box in ((0, 0, height, height), (height, 0, width, height)):
                half = img.crop(box).resize((image_size, image_size), Image.Resampling.BILINEAR)
                halves.append(torch.frombuffer(bytearray(half.tobytes()), dtype=torch.uint8))
    except _DECODE_ERRORS as e:
        raise _bad_image(path, e) from None
    a, b = (
        # (S * S * C,) -> (S, S, C) -> (C, S, S), then [0, 255] -> [-1, 1]
        h.view(image_size, image_size, channels).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        for h in halves
    )
    return a, b


class PairedImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """One split of a paired folder; items are ``(a, b)``, each ``(C, S, S)`` in ``[-1, 1]``.

    The dataset is ``epoch_aware``: the loader's sampler hands it ``(index, epoch)`` keys, and
    the flip of sample ``i`` in epoch ``e`` is drawn from ``(seed, e, i)``. So it does not depend
    on the worker count, on persistent workers holding stale state, or on where a resumed run
    restarted. A plain ``int`` key reads epoch 0.

    Args:
        paths: The A|B image files.
        channels: 1 to read grayscale, 3 for RGB.
        image_size: Side length each half is resized to.
        hflip: Randomly flip pairs horizontally; A and B always flip together, or the target
            would no longer match its input.
        seed: Base seed of the flips.
    """

    epoch_aware = True

    def __init__(
        self,
        paths: list[Path],
        *,
        channels: int,
        image_size: int,
        hflip: bool = False,
        seed: int = 0,
    ) -> None:
        assert channels in (1, 3), f"channels must be 1 or 3, got {channels}"
        assert image_size > 0, f"image_size must be positive, got {image_size}"
        self.paths = paths
        self.channels = channels
        self.image_size = image_size
        self.hflip = hflip
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labels(self) -> Tensor:
        """Pairs have no classes: one label for all (a validation split is drawn at random)."""
        return torch.zeros(len(self.paths), dtype=torch.long)

    def select(self, indices: list[int], *, train: bool) -> PairedImageDataset:
        """The pairs ``indices`` as a split of their own; only a training split flips."""
        return PairedImageDataset(
            [self.paths[i] for i in indices],
            channels=self.channels,
            image_size=self.image_size,
            hflip=self.hflip and train,
            seed=self.seed,
        )

    def flipped(self, index: int, epoch: int = 0) -> bool:
        """Whether sample ``index`` is flipped in ``epoch``."""
        # The keyed coin ImageFolderDataset flips with: no RNG state, same in any worker.
        return self.hflip and keyed_coin(self.seed, epoch, index)

    def __getitem__(self, key: Key) -> tuple[Tensor, Tensor]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        a, b = load_pair(self.paths[index], self.channels, self.image_size)
        if self.flipped(index, epoch):
            a, b = a.flip(-1), b.flip(-1)
        return a, b


def _drop_bad(paths: list[Path], split_dir: Path) -> list[Path]:
    good = []
    for path in paths:
        try:
            _check_pair(path, decode=True)
        except BadImageError as e:  # the user passed --skip-bad-images: no advice to pass it
            log.warning("%s; left out (--skip-bad-images)", str(e).split(f"; {_SKIP_HINT}")[0])
            continue
        good.append(path)
    skipped = len(paths) - len(good)
    if skipped:
        log.warning("%s: skipped %d unreadable images (--skip-bad-images)", split_dir, skipped)
    if not good:
        raise UserError(f"every image in {split_dir} is unreadable")
    return good


def _scan_splits(root: Path, options: DataOptions) -> dict[str, list[Path]]:
    """The checked image paths of train/, test/ and (if present) val/, of those asked for."""
    has_val = (root / "val").is_dir()
    if has_val and options.val_split and options.wants("val"):
        raise UserError(
            f"{root} has a val/ folder and --val-split {options.val_split} was given; "
            "drop --val-split to use val/, or move val/ away"
        )
    wanted = [s for s in (*SPLITS, "val") if options.wants(s) and (s != "val" or has_val)]
    if options.wants("val") and not has_val and options.val_split and "train" not in wanted:
        wanted.append("train")  # the validation split is carved out of it
    splits: dict[str, list[Path]] = {}
    for split in wanted:
        split_dir = root / split
        paths = scan_pairs(split_dir)
        if options.skip_bad_images:
            paths = _drop_bad(paths, split_dir)
        for p in paths:
            _check_pair(p, decode=False)
        splits[split] = paths
    return splits


def build_paired(options: DataOptions) -> DataBundle:
    """Data source for a folder path in the pix2pix layout (``--data FOLDER`` of a paired model).

    Every image's header is checked before training starts (readable, twice as wide as high),
    so a bad file stops the run at once instead of in a loader worker hours later.

    Args:
        options: ``name`` is the folder; ``image_size`` (default 32) the side of each half;
            ``skip_bad_images`` drops (and counts) unreadable files; ``seed`` keys the flips.

    Returns:
        The splits; the training split flips pairs at random (``--augment flip``, the
        default) or not (``none``). The spec has no classes.

    Raises:
        UserError: The folder, a split or its images are missing or malformed; the message
            names the path and the fix.
    """
    root = Path(os.path.expanduser(options.name))
    if not root.is_dir():
        raise UserError(
            f"data folder {root} does not exist; if it moved, pass --data NEW_PATH; {_LAYOUT_HINT}"
        )
    augment = options.augment or "flip"
    if augment not in ("none", "flip"):
        raise UserError(
            f"--augment {augment} does not apply to A|B pairs (a crop would misalign A and B); "
            "use none or flip"
        )
    splits = _scan_splits(root, options)
    has_val = (root / "val").is_dir()
    # Channels come from every image (3 if any has colour) unless --channels says; every
    # image is converted to them.
    headers = [read_header(p, _SKIP_HINT) for paths in splits.values() for p in paths]
    channels, why = decide_channels(headers, options.channels)
    log.info("data: channels %s", why)
    size = options.image_size or 32
    common = {"channels": channels, "image_size": size, "seed": options.seed}
    parts: dict[str, Dataset[Any]] = {
        name: PairedImageDataset(paths, hflip=name == "train" and augment == "flip", **common)
        for name, paths in splits.items()
    }
    train, val = parts.get("train"), parts.get("val")
    info: dict[str, Any] = {"channels": why}
    if "val" in splits:
        info["val"] = f"{len(splits['val'])} pairs in {root / 'val'}"
    elif options.val_split and train is not None and not has_val:
        train, val, record = carve_val(train, options.val_split, options.seed, source=str(root))
        info.update(record)
    else:
        info["val"] = "none (no val/ folder; pass --val-split F to hold a fraction of train out)"
    return DataBundle(
        train=train,
        test=parts.get("test"),
        spec=DataSpec(
            channels=channels, image_size=size, num_classes=0, class_names=(), layout="paired"
        ),
        val=val,
        info=info,
    )
