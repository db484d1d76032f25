"""``--augment randaugment|trivialaugment|autoaugment``: torchvision's automatic augmentation
policies (``transforms.v2``), with keyed draws.

Each sample's operations and magnitudes come from torch's generator seeded with a hash of
``(seed, epoch, sample index)`` inside :func:`torch.random.fork_rng`, so, as the other
policies of ``augment.py``, a sample is augmented the same way in a worker or on the device,
alone or in a batch, and in a resumed run. The operations run on the images' device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

#: The automatic policies and torchvision's transform for each.
AUTO_POLICIES = ("randaugment", "trivialaugment", "autoaugment")

# The draws' stream, apart from the flip and crop streams of augment.py.
STREAM_AUTO = 101


def _transform(policy: str) -> Any:
    from torchvision.transforms import v2

    if policy == "randaugment":
        return v2.RandAugment()  # 2 operations of magnitude 9 (of 31), as the paper's ImageNet
    if policy == "trivialaugment":
        return v2.TrivialAugmentWide()
    return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)


def auto_augment(images: Tensor, policy: str, seeds: Tensor) -> Tensor:
    """Applies an automatic policy to each image of a float batch in ``[-1, 1]``.

    Args:
        images: ``(B, C, H, W)`` float in ``[-1, 1]``.
        policy: One of :data:`AUTO_POLICIES`.
        seeds: ``(B,)`` one seed per image (the keyed draws of ``augment.py``).

    Returns:
        The augmented batch, float in ``[-1, 1]`` (the operations work on 8-bit values, as
        on the image files).
    """
    op = _transform(policy)
    as_bytes = ((images + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    out = []
    for img, seed in zip(as_bytes, seeds.tolist(), strict=True):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            out.append(op(img))
    return torch.stack(out).float().div_(127.5).sub_(1.0)
