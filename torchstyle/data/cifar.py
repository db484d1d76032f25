"""CIFAR-10 from a local ``cifar-10-batches-py`` folder; downloaded only when the user asks
(``--download``).

The folder is read directly, in the format the CIFAR-10 page publishes (``data_batch_1`` to
``data_batch_5``, ``test_batch``, ``batches.meta``: pickled dicts whose ``data`` is an
``(N, 3072)`` uint8 array, rows of 1,024 red, then green, then blue bytes, and whose
``labels`` are ints). The pickles are read by an unpickler that builds only dicts, lists,
strings, numbers and numpy arrays, so a file that is not a CIFAR-10 batch cannot run code.
Only the batches of the splits asked for are read. ``--download`` fetches the archive with
torchvision, which checks its published checksums.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from torchstyle.data.base import (
    DataBundle,
    DataOptions,
    TensorImageDataset,
    check_fixed_size_options,
)
from torchstyle.data.splits import DEFAULT_VAL_FRACTION, carve_val
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
SIDE = 32

# What a CIFAR-10 batch pickle may name: numpy's array reconstruction, and the codec that
# protocol 2 writes bytes with. Nothing else is looked up.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-10 batch")
        return super().find_class(module, name)


def read_batch(path: Path) -> dict[str, Any]:
    """One pickled batch file as a dict with ``str`` keys (the files were written by Python 2).

    Raises:
        UserError: The file is missing or is not a CIFAR-10 batch.
    """
    try:
        with path.open("rb") as f:
            loaded = _BatchUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise UserError(
            f"CIFAR-10 file {path} is missing; pass --data-dir to the folder that holds "
            f"{FOLDER}, or add --download to fetch it there once"
        ) from None
    except Exception as e:  # a damaged or foreign file: any unpickling error means the same
        raise UserError(
            f"{path} is not a CIFAR-10 batch ({type(e).__name__}: {e}); delete {path.parent} "
            "and fetch it again with --download"
        ) from None
    if not isinstance(loaded, dict):
        raise UserError(f"{path} is not a CIFAR-10 batch (it holds a {type(loaded).__name__})")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in loaded.items()}


def read_images(folder: Path, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` of the batch files ``names``.

    Raises:
        UserError: A file is missing or malformed.
    """
    images, labels = [], []
    for name in names:
        batch = read_batch(folder / name)
        try:
            data = torch.as_tensor(batch["data"], dtype=torch.uint8)
            images.append(data.reshape(-1, 3, SIDE, SIDE))
            labels.append(torch.as_tensor(batch["labels"], dtype=torch.long))
        except (KeyError, RuntimeError, TypeError, ValueError) as e:
            raise UserError(
                f"{folder / name} is not a CIFAR-10 batch (its data or labels: {e}); delete "
                f"{folder} and fetch it again with --download"
            ) from None
        if len(labels[-1]) != len(images[-1]):
            raise UserError(
                f"{folder / name} holds {len(images[-1])} images but "
                f"{len(labels[-1])} labels; delete {folder} and fetch it again"
            )
    return torch.cat(images), torch.cat(labels)


def class_names(folder: Path) -> tuple[str, ...]:
    """The ten class names from ``batches.meta``."""
    names = read_batch(folder / META).get("label_names")
    if not isinstance(names, list) or not names:
        raise UserError(f"{folder / META} has no label_names; fetch CIFAR-10 again with --download")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _folder(options: DataOptions) -> Path:
    """The ``cifar-10-batches-py`` folder, fetched first with ``--download`` if missing."""
    root = Path(os.path.expanduser(options.data_dir or "data"))
    folder = root / FOLDER
    if not (folder / META).is_file() and options.download:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=True, download=True)  # checks the archive's checksum
    if not (folder / META).is_file():
        raise UserError(
            f"CIFAR-10 not found under {root} (no {FOLDER}/{META}); pass --data-dir to the "
            f"folder that holds {FOLDER}, or add --download to fetch it there once"
        )
    return folder


def build_cifar10(options: DataOptions) -> DataBundle:
    """Data source ``cifar10``: the splits asked for, held in memory as uint8 tensors.

    10% of the 50,000 training images are held out for validation unless ``val_split`` says
    otherwise; the 10,000 test images are the official test set.
    """
    check_fixed_size_options(options, "cifar10", channels=3)
    folder = _folder(options)

    def split(names: tuple[str, ...], augment: str) -> TensorImageDataset:
        # uint8 in memory: 150 MB for the training set instead of 600 MB as floats.
        x, y = read_images(folder, names)
        if options.image_size and options.image_size != SIDE:
            x = torch.nn.functional.interpolate(
                x.float(), size=options.image_size, mode="bilinear", antialias=True
            )
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        return TensorImageDataset(x, y, augment=augment, seed=options.seed)

    names = class_names(folder)
    spec = DataSpec(
        channels=3, image_size=options.image_size or SIDE, num_classes=len(names), class_names=names
    )
    train: Dataset[Any] | None = None
    val: Dataset[Any] | None = None
    info: dict[str, Any] = {}
    if options.wants("train") or options.wants("val"):
        # The usual CIFAR-10 augmentation: pad 4, random 32x32 crop, horizontal flip.
        whole = split(TRAIN_BATCHES, options.augment or "crop-flip")
        val_split = DEFAULT_VAL_FRACTION if options.val_split is None else options.val_split
        train, val, info = carve_val(whole, val_split, options.seed, source="cifar10")
    test = split((TEST_BATCH,), "none") if options.wants("test") else None
    return DataBundle(train=train, test=test, spec=spec, val=val, info=info)
