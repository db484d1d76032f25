"""Dataset plumbing shared by every source: options, the bundle a source returns, and a
tensor-backed dataset that hands out whole batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from torchstyle.data.augment import ResizePolicy, augment_batch, to_float
from torchstyle.data.autoaugment import AUTO_POLICIES
from torchstyle.data.registry import SPLIT_NAMES
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
        augment: Training augmentation policy (see ``torchstyle.data.augment``); None takes
            the source's default (digits: none, CIFAR-10: crop-flip, folders: flip).
        channels: Image channels (1 or 3) every image is converted to; None decides from
            the whole dataset (3 if any image has colour, else 1).
        val_split: Fraction of the training split held out for validation (stratified by
            class, drawn from ``seed``); 0 holds none; None takes the source's default
            (digits, CIFAR-10: 0.1; folders: their ``val/`` folder, if any).
        class_names: Label the data with these classes (a run's, for ``torchstyle test``):
            a folder may lack some of them but not hold others.
        splits: The splits to build, of ``train``, ``val`` and ``test``: a source reads
            (and checks, and decodes) only these and what they are carved from. Training
            asks for all three; ``torchstyle test`` for ``test`` alone.
    """

    name: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    skip_bad_images: bool = False
    download: bool = False
    seed: int = 0
    layout: str = "classes"
    augment: str | None = None
    channels: int | None = None
    val_split: float | None = None
    #: Fraction of a folder's train/ held out as its test split (for a folder without test/;
    #: stratified by class, drawn from ``seed``). None: the folder's test/.
    test_split: float | None = None
    class_names: tuple[str, ...] | None = None
    #: Pretrained weights' resize, centre crop and interpolation for images read from files
    #: (its ``crop`` is ``image_size``); None: the centred square resized to ``image_size``.
    resize: ResizePolicy | None = None
    splits: tuple[str, ...] = SPLIT_NAMES

    def wants(self, split: str) -> bool:
        """Whether the split ``split`` (``train``, ``val`` or ``test``) is to be built."""
        return split in self.splits


@dataclass
class DataBundle:
    """The splits and what a model needs to know about them.

    Attributes:
        train: The training split; None when ``DataOptions.splits`` did not ask for it.
        test: The test split, evaluated once at the end (and by ``torchstyle test``); None
            when not asked for.
        spec: Shape, classes and layout of the samples.
        val: The validation split that picks ``best.pt`` and drives early stopping; None
            when the source has none.
        info: How the data was decided, for the run's records: for example ``val`` (where
            the validation split came from), ``channels`` and ``image_size`` (why).
        checks: Background checks of the data, awaited before the first evaluation.
    """

    train: Dataset[Any] | None
    test: Dataset[Any] | None
    spec: DataSpec
    val: Dataset[Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: Checks still running (a large training folder decoded in the background); each has a
    #: ``wait()`` the engine calls before the first evaluation.
    checks: list[Any] = field(default_factory=list)


class TensorImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """Images and labels held as two tensors, augmented a whole batch at a time.

    ``__getitems__`` returns a whole batch with one indexing op; loaders built by
    :func:`torchstyle.data.make_loader` use it and skip per-sample collation. With an
    augmentation policy the dataset is ``epoch_aware``: the sampler hands it
    ``(index, epoch)`` keys, the draws' keys.

    Args:
        images: ``(N, C, H, W)`` uint8 images, or float images in ``[-1, 1]``; or ``(N, F)``
            float feature vectors (``features`` layout, never augmented).
        labels: ``(N,)`` int64 labels.
        augment: ``none``, ``flip`` or ``crop-flip`` (see ``torchstyle.data.augment``).
        seed: Base seed of the augmentation draws.
    """

    batched = True

    def __init__(
        self, images: Tensor, labels: Tensor, *, augment: str = "none", seed: int = 0
    ) -> None:
        # Feature vectors (N, F) are held the same way; they are never augmented.
        assert images.ndim == 4 or (images.ndim == 2 and augment == "none"), (
            f"images must be (N, C, H, W) or un-augmented (N, F), got {tuple(images.shape)}"
        )
        assert labels.shape == images.shape[:1], "one label per image"
        assert augment in ("none", "flip", "crop-flip", *AUTO_POLICIES), (
            f"unsupported augment {augment!r} for in-memory data"
        )
        self.images = images
        self.labels = labels.long()
        self.augment = augment
        self.seed = seed
        self.epoch_aware = augment != "none"

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        x, y = self.batch(torch.tensor([index]), epoch)
        return x[0], y[0]

    def __getitems__(self, keys: Any) -> tuple[Tensor, Tensor]:
        """A batch from a ``BatchIndex`` (index tensor, epoch) or from a list of indices."""
        if isinstance(keys, tuple) and len(keys) == 2 and isinstance(keys[0], Tensor):
            return self.batch(keys[0], keys[1])
        return self.batch(torch.as_tensor(keys, dtype=torch.long), 0)

    def subset(self, idx: Tensor, *, augment: str | None = None) -> TensorImageDataset:
        """The samples ``idx`` as a dataset of their own (``augment`` defaults to this one's)."""
        return TensorImageDataset(
            self.images[idx], self.labels[idx], augment=augment or self.augment, seed=self.seed
        )

    def batch(self, idx: Tensor, epoch: int) -> tuple[Tensor, Tensor]:
        """The samples ``idx`` of ``epoch``, augmented; ``idx`` lives where the data lives."""
        x = augment_batch(to_float(self.images[idx]), self.augment, self.seed, epoch, idx)
        return x, self.labels[idx]


def check_fixed_size_options(options: DataOptions, source: str, *, channels: int) -> None:
    """Refuses options an in-memory source of fixed-size images cannot honour.

    Raises:
        UserError: ``--augment rrc-flip`` (it crops the original images, which these sources
            do not keep at varying sizes) or a ``--channels`` other than the source's.
    """
    from torchstyle.errors import UserError

    if options.augment == "rrc-flip":
        raise UserError(
            f"--augment rrc-flip crops images of varying size, which {source} does not have; "
            "use none, flip or crop-flip"
        )
    if options.channels is not None and options.channels != channels:
        raise UserError(
            f"{source} images have {channels} channel(s), not --channels {options.channels}; "
            "drop --channels"
        )
