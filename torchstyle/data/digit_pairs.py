"""``digits-pairs``: the embedded digits as an image-to-image task, so pix2pix trains offline.

Each pair is ``(A, B)``: B is a digit resized to the model's side, A the edges of B (the
Sobel gradient magnitude, scaled to the full range per image). The translation, filling
outlines into strokes, is what the pix2pix ``edges2*`` datasets ask. The splits are the
digits' own (the same 360 test digits), with a validation split held out of train.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from torchstyle.data.augment import flip_mask
from torchstyle.data.base import DataBundle, DataOptions
from torchstyle.data.digits import load_digits_split
from torchstyle.data.splits import DEFAULT_VAL_FRACTION, carve_val
from torchstyle.errors import UserError
from torchstyle.spec import DataSpec

# pix2pix's generator halves the side twice: 32 px keeps every stage even.
DEFAULT_SIZE = 32


def edges(images: Tensor) -> Tensor:
    """Sobel gradient magnitude of ``(N, 1, H, W)`` images in ``[-1, 1]``, scaled per image
    to ``[-1, 1]`` (an image with no edge stays at -1)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
    x = (images + 1.0) / 2.0  # [0, 1]
    grad = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels)  # (N, 2, H, W)
    mag = grad.pow(2).sum(dim=1, keepdim=True).sqrt()  # (N, 1, H, W)
    peak = mag.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return mag / peak * 2.0 - 1.0


class TensorPairDataset(Dataset[tuple[Tensor, Tensor]]):
    """Pairs ``(a, b)`` held as two tensors, handed out a whole batch at a time.

    Args:
        a: ``(N, C, H, W)`` inputs in ``[-1, 1]``.
        b: ``(N, C, H, W)`` targets in ``[-1, 1]``.
        labels: ``(N,)`` labels the pairs came from (used only to stratify a split).
        augment: ``none``, or ``flip`` (A and B flipped together, keyed on the sample).
        seed: Base seed of the flips.
    """

    batched = True

    def __init__(
        self, a: Tensor, b: Tensor, labels: Tensor, *, augment: str = "none", seed: int = 0
    ) -> None:
        assert a.shape == b.shape and a.ndim == 4, "a and b must both be (N, C, H, W)"
        assert augment in ("none", "flip"), f"unsupported augment {augment!r} for pairs"
        self.a, self.b, self.labels = a, b, labels
        self.augment = augment
        self.seed = seed
        self.epoch_aware = augment != "none"

    def __len__(self) -> int:
        return self.a.shape[0]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        a, b = self.batch(torch.tensor([index]), epoch)
        return a[0], b[0]

    def __getitems__(self, keys: Any) -> tuple[Tensor, Tensor]:
        """A batch from a ``BatchIndex`` (index tensor, epoch) or from a list of indices."""
        if isinstance(keys, tuple) and len(keys) == 2 and isinstance(keys[0], Tensor):
            return self.batch(keys[0], keys[1])
        return self.batch(torch.as_tensor(keys, dtype=torch.long), 0)

    def batch(self, idx: Tensor, epoch: int) -> tuple[Tensor, Tensor]:
        """The pairs ``idx`` of ``epoch``; with ``flip``, A and B of a sample flip together."""
        a, b = self.a[idx], self.b[idx]
        if self.augment == "flip":
            mask = flip_mask(self.seed, epoch, idx).view(-1, 1, 1, 1)
            a, b = torch.where(mask, a.flip(-1), a), torch.where(mask, b.flip(-1), b)
        return a, b

    def subset(self, idx: Tensor, *, augment: str | None = None) -> TensorPairDataset:
        """The pairs ``idx`` as a dataset of their own (``augment`` defaults to this one's)."""
        return TensorPairDataset(
            self.a[idx],
            self.b[idx],
            self.labels[idx],
            augment=augment or self.augment,
            seed=self.seed,
        )


def _pairs(split: Any, augment: str, seed: int) -> TensorPairDataset:
    b = split.images
    return TensorPairDataset(edges(b), b, split.labels, augment=augment, seed=seed)


def build_digit_pairs(options: DataOptions) -> DataBundle:
    """Data source ``digits-pairs``: 1,295 training, 142 validation and 360 test pairs.

    Raises:
        UserError: An option the pairs cannot honour (``--augment`` other than none or
            flip, ``--channels 3``).
    """
    augment = options.augment or "none"
    if augment not in ("none", "flip"):
        raise UserError(f"--augment {augment} does not apply to digits-pairs; use none or flip")
    if options.channels not in (None, 1):
        raise UserError(
            f"digits-pairs images have 1 channel, not --channels {options.channels}; drop --channels"
        )
    size = options.image_size or DEFAULT_SIZE
    digits = load_digits_split(size, splits=options.splits)
    val_split = DEFAULT_VAL_FRACTION if options.val_split is None else options.val_split
    train: Dataset[Any] | None = None
    val: Dataset[Any] | None = None
    info: dict[str, Any] = {"pairs": "A = the Sobel edges of B, B = the digit"}
    if digits.train is not None:
        pairs = _pairs(digits.train, augment, options.seed)
        train, val, record = carve_val(pairs, val_split, options.seed, source="digits-pairs")
        info.update(record)
    return DataBundle(
        train=train,
        test=None if digits.test is None else _pairs(digits.test, "none", options.seed),
        spec=DataSpec(channels=1, image_size=size, num_classes=0, class_names=(), layout="paired"),
        val=val,
        info=info,
    )
