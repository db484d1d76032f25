"""The 8x8 handwritten digits that ship inside scikit-learn: real data that works offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from torchstyle.data.base import (
    DataBundle,
    DataOptions,
    TensorImageDataset,
    check_fixed_size_options,
)
from torchstyle.data.digits_split import ORDER, TRAIN_SIZE
from torchstyle.data.registry import SPLIT_NAMES
from torchstyle.data.splits import DEFAULT_VAL_FRACTION, carve_val
from torchstyle.spec import DataSpec

# A fixed split so that every run, on every machine, tests on the same 360 images.
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits_split(
    image_size: int | None = None,
    augment: str = "none",
    seed: int = 0,
    val_split: float = 0.0,
    splits: tuple[str, ...] = SPLIT_NAMES,
) -> DataBundle:
    """Loads the digits with a fixed, stratified train/test split.

    Args:
        image_size: Resize the 8x8 images to this side (bilinear); None keeps 8.
        augment: Training augmentation policy; digits are not mirror-symmetric, so none.
        seed: Base seed of the augmentation draws and of the validation split.
        val_split: Fraction of the 1,437 training images held out for validation
            (stratified, drawn from ``seed``); the 360 test images never change.
        splits: The splits to build (``train``, ``val``, ``test``); the others are None.

    Returns:
        1,437 training (less validation) and 360 test images, 1 channel, in ``[-1, 1]``.
    """
    pixels, target = read_digits()
    # Pixel values are counts 0..16 of a 4x4 block; scale to [0, 1], then to [-1, 1].
    images = torch.tensor(pixels, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    images = images * 2.0 - 1.0  # (N, 1, 8, 8)
    labels = torch.tensor(target, dtype=torch.long)
    size = image_size or 8
    train_idx_t, test_idx_t = split_order()
    spec = DataSpec(
        channels=1, image_size=size, num_classes=10, class_names=tuple(str(i) for i in range(10))
    )

    def part(idx: Tensor, policy: str) -> TensorImageDataset:
        x = images[idx]
        if size != 8:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return TensorImageDataset(x, labels[idx], augment=policy, seed=seed)

    train: Dataset[Any] | None = None
    val: Dataset[Any] | None = None
    info: dict[str, Any] = {}
    if "train" in splits or "val" in splits:
        train, val, info = carve_val(part(train_idx_t, augment), val_split, seed, source="digits")
    test = part(test_idx_t, "none") if "test" in splits else None
    return DataBundle(train=train, test=test, spec=spec, val=val, info=info)


def read_digits() -> tuple[Any, Any]:
    """The 1,797 digits as scikit-learn ships them: pixels ``(N, 64)`` and labels ``(N,)``.

    Read from scikit-learn's data file without importing scikit-learn (its import costs about
    a second of start-up); through ``sklearn.datasets.load_digits`` if the file is elsewhere.
    """
    import importlib.util

    import numpy as np

    found = importlib.util.find_spec("sklearn")
    folders = list(found.submodule_search_locations or []) if found else []
    for folder in folders:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data, digits.target


def split_order() -> tuple[Tensor, Tensor]:
    """The fixed split's training and test indices, in scikit-learn's order."""
    import base64
    import zlib

    import numpy as np

    raw = zlib.decompress(base64.b64decode("".join(ORDER)))
    order = torch.from_numpy(np.frombuffer(raw, dtype="<u2").astype(np.int64))
    return order[:TRAIN_SIZE], order[TRAIN_SIZE:]


def build_digits(options: DataOptions) -> DataBundle:
    """Data source ``digits``: 1,295 training, 142 validation and 360 test images."""
    check_fixed_size_options(options, "digits", channels=1)
    val_split = DEFAULT_VAL_FRACTION if options.val_split is None else options.val_split
    return load_digits_split(
        options.image_size, options.augment or "none", options.seed, val_split, options.splits
    )
