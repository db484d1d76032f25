"""Batched image augmentation whose every draw is keyed on ``(seed, epoch, sample index)``.

No RNG state is involved: the flip, crop offset or crop box of sample ``i`` in epoch ``e`` is
a hash of ``(seed, e, i)``. The same sample is augmented the same way on the CPU or a GPU,
in a worker or in the main process, one at a time or in a batch, and in a resumed run. That
is what lets ``--data-on-device`` and ``--decode gpu`` run the stock path's semantics exactly,
and what keeps a resumed run bitwise on the track of the uninterrupted one.

Policies (``--augment``):

* ``none``: nothing.
* ``flip``: horizontal flip with probability 1/2.
* ``crop-flip``: zero-pad by ``size // 8`` then a random crop back to size (CIFAR style; as
  torchvision's ``RandomCrop(size, padding)``), then the flip.
* ``rrc-flip``: torchvision's ``RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3))``
  (ten attempts, then the centre-crop fallback), then the flip.
* ``randaugment``, ``trivialaugment``, ``autoaugment``: ``rrc-flip`` (on fixed-size in-memory
  data: ``flip``), then torchvision's policy of that name (``autoaugment.py``).

A :class:`ResizePolicy` (pretrained weights' own: resize, crop, interpolation) replaces the
centred square: evaluation resizes the shorter side and centre-crops as the weights' library
evaluates, and the random resized crop resamples with the weights' interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from torchstyle.data.autoaugment import AUTO_POLICIES, STREAM_AUTO, auto_augment

AUGMENTS = ("none", "flip", "crop-flip", "rrc-flip", *AUTO_POLICIES)

# Independent streams of draws for one sample.
STREAM_FLIP = 1
STREAM_CROP_Y = 2
STREAM_CROP_X = 3
STREAM_RRC = 16  # 4 draws per attempt from here on

_MASK31 = 0x7FFFFFFF
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
RRC_ATTEMPTS = 10


INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class ResizePolicy:
    """How pretrained weights' library evaluates an image: resize, then centre crop.

    Attributes:
        resize: The shorter side is resized to this (the longer one keeps the aspect ratio).
        crop: Then the centred ``crop x crop`` square is taken: the model's input side.
        interpolation: ``bilinear``, ``bicubic`` or ``nearest`` (antialiased when shrinking).
    """

    resize: int
    crop: int
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS or not 0 < self.crop <= self.resize:
            raise ValueError(f"not a resize policy: {self}")

    def evaluate(self, image: Tensor) -> Tensor:
        """``image`` (``(C, H, W)``) resized and centre-cropped to ``(C, crop, crop)``.

        A uint8 image on the CPU is resampled by PIL, as torchvision's and timm's evaluation
        transforms resample the PIL images they are given, so the result equals theirs; on
        another device (or float) torchvision's tensor resize runs there (within 2/255 of
        PIL's).
        """
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        mode = InterpolationMode(self.interpolation)
        if image.device.type == "cpu" and image.dtype == torch.uint8:
            pil = TF.resize(TF.to_pil_image(image), [self.resize], interpolation=mode)
            out: Tensor = TF.pil_to_tensor(TF.center_crop(pil, [self.crop]))
            return out
        resized = TF.resize(image, [self.resize], interpolation=mode, antialias=True)
        cropped: Tensor = TF.center_crop(resized, [self.crop])
        return cropped


def keyed_uniform(seed: int, epoch: int, index: Tensor | int, stream: int) -> Tensor:
    """Uniform draws in ``[0, 1)`` that are a pure function of their key.

    Args:
        seed: Base seed (any int; reduced to 31 bits).
        epoch: The epoch.
        index: Sample indices: an int or an int64 tensor on any device.
        stream: Which of a sample's independent draws.

    Returns:
        float64 tensor shaped like ``index``, on its device.
    """
    idx = torch.as_tensor(index, dtype=torch.int64)
    # Every product stays below 2**62: no int64 overflow on any device.
    x = (
        (idx & _MASK31) * 0x5BD1E995
        + ((seed & _MASK31) ^ 0x2545F491) * 0x27D4EB2F
        + (epoch & 0xFFFF) * 0x165667B1
        + stream * 0x0B4E0EF3
    ) & _MASK31
    for _ in range(3):  # avalanche: neighbouring keys give unrelated draws
        x = ((x ^ (x >> 15)) * 0x2C1B3C6D) & _MASK31
        x = ((x ^ (x >> 12)) * 0x297A2D39) & _MASK31
    return (x ^ (x >> 15)).double() / 2.0**31


def flip_mask(seed: int, epoch: int, index: Tensor) -> Tensor:
    """Which samples are flipped (probability 1/2), a bool tensor like ``index``."""
    return keyed_uniform(seed, epoch, index, STREAM_FLIP) < 0.5


def to_float(images: Tensor) -> Tensor:
    """uint8 ``[0, 255]`` (or float already in ``[-1, 1]``) to float ``[-1, 1]``."""
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    return images.float()


def flip(images: Tensor, mask: Tensor) -> Tensor:
    """Flips the images ``(B, C, H, W)`` whose ``mask`` entry is True."""
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(-1), images)


def pad_crop(images: Tensor, seed: int, epoch: int, index: Tensor, pad: int) -> Tensor:
    """Zero-pads by ``pad`` and crops back to the original size at keyed offsets.

    Same as torchvision's ``RandomCrop(size, padding=pad)`` with offsets
    ``top = floor(u * (2 * pad + 1))``, batched as one gather.
    """
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
    top = (
        (keyed_uniform(seed, epoch, index, STREAM_CROP_Y) * (2 * pad + 1)).long().to(images.device)
    )
    left = (
        (keyed_uniform(seed, epoch, index, STREAM_CROP_X) * (2 * pad + 1)).long().to(images.device)
    )
    rows = top.view(b, 1) + torch.arange(h, device=images.device)  # (B, H)
    cols = left.view(b, 1) + torch.arange(w, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)


def rrc_params(heights: Tensor, widths: Tensor, seed: int, epoch: int, index: Tensor) -> Tensor:
    """Crop boxes of torchvision's ``RandomResizedCrop.get_params``, for a batch at once.

    Ten attempts per sample draw an area fraction in ``RRC_SCALE`` and a log-uniform aspect
    ratio in ``RRC_RATIO``; the first box that fits is taken, at a uniform position. A sample
    with no fitting attempt gets torchvision's fallback: the largest centred box whose ratio
    is clamped to ``RRC_RATIO``.

    Args:
        heights: ``(B,)`` image heights.
        widths: ``(B,)`` image widths.
        seed: Base seed.
        epoch: The epoch.
        index: ``(B,)`` sample indices.

    Returns:
        ``(B, 4)`` int64 boxes ``(top, left, height, width)``.
    """
    # Boxes are a few numbers per image: they are drawn on the host, wherever the images are.
    h = heights.cpu().double().view(-1, 1)  # (B, 1)
    w = widths.cpu().double().view(-1, 1)
    area = h * w
    streams = STREAM_RRC + 4 * torch.arange(RRC_ATTEMPTS)  # (A,)
    idx = index.view(-1, 1).cpu()
    draws = [keyed_uniform(seed, epoch, idx, int(s) + k) for s in streams for k in range(4)]
    u = torch.cat(draws, dim=1).view(-1, RRC_ATTEMPTS, 4)  # (B, A, 4): scale, ratio, top, left
    target = area * (RRC_SCALE[0] + u[..., 0] * (RRC_SCALE[1] - RRC_SCALE[0]))  # (B, A)
    log_lo, log_hi = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    ratio = torch.exp(log_lo + u[..., 1] * (log_hi - log_lo))
    cw = torch.round(torch.sqrt(target * ratio))
    ch = torch.round(torch.sqrt(target / ratio))
    ok = (cw > 0) & (ch > 0) & (cw <= w) & (ch <= h)  # (B, A)
    first = torch.where(
        ok.any(dim=1), ok.float().argmax(dim=1), torch.full_like(ok[:, 0], -1, dtype=torch.long)
    )
    pick = first.clamp(min=0).view(-1, 1)
    ch_p, cw_p = ch.gather(1, pick), cw.gather(1, pick)  # (B, 1)
    top = torch.floor(u[..., 2].gather(1, pick) * (h - ch_p + 1))
    left = torch.floor(u[..., 3].gather(1, pick) * (w - cw_p + 1))
    # Fallback (no attempt fitted): centre crop with the ratio clamped into range.
    in_ratio = w / h
    fw = torch.where(in_ratio > RRC_RATIO[1], torch.round(h * RRC_RATIO[1]), w)
    fh = torch.where(in_ratio < RRC_RATIO[0], torch.round(w / RRC_RATIO[0]), h)
    fallback = (first < 0).view(-1, 1)
    ch_p = torch.where(fallback, fh, ch_p)
    cw_p = torch.where(fallback, fw, cw_p)
    top = torch.where(fallback, torch.div(h - fh, 2, rounding_mode="floor"), top)
    left = torch.where(fallback, torch.div(w - fw, 2, rounding_mode="floor"), left)
    return torch.cat([top, left, ch_p, cw_p], dim=1).long()  # (B, 4)


def centre_square(heights: Tensor, widths: Tensor) -> Tensor:
    """``(B, 4)`` boxes ``(top, left, side, side)`` of each image's centred square."""
    side = torch.minimum(heights, widths)
    top = torch.div(heights - side, 2, rounding_mode="floor")
    left = torch.div(widths - side, 2, rounding_mode="floor")
    return torch.stack([top, left, side, side], dim=1)


def resized_crop(
    images: Sequence[Tensor], boxes: Tensor, size: int, interpolation: str = "bilinear"
) -> Tensor:
    """Crops each image to its box and resizes it to ``size x size`` (antialiased).

    The same arithmetic as torchvision's ``resized_crop`` on tensors. Images may differ in
    size, so this loops over them, but every op stays on the images' device.

    Args:
        images: ``B`` images ``(C, H_i, W_i)``, float in ``[-1, 1]``.
        boxes: ``(B, 4)`` boxes ``(top, left, height, width)``.
        size: Output side.
        interpolation: ``bilinear``, ``bicubic`` (clamped back into ``[-1, 1]``, as a
            resampled uint8 image is) or ``nearest``.

    Returns:
        ``(B, C, size, size)``.
    """
    out = []
    smooth = interpolation != "nearest"
    for img, (top, left, bh, bw) in zip(images, boxes.tolist(), strict=True):
        crop = img[:, top : top + bh, left : left + bw].unsqueeze(0)  # (1, C, bh, bw)
        if (bh, bw) != (size, size):
            crop = F.interpolate(
                crop,
                size=(size, size),
                mode=interpolation,
                align_corners=False if smooth else None,
                antialias=smooth,
            )
        out.append(crop.clamp(-1.0, 1.0) if interpolation == "bicubic" else crop)
    return torch.cat(out)  # (B, C, S, S)


def transform_images(
    images: Sequence[Tensor],
    policy: str,
    size: int,
    seed: int,
    epoch: int,
    index: Tensor,
    train: bool,
    resize: ResizePolicy | None = None,
) -> Tensor:
    """Decoded images of any sizes to a training or test batch, as a policy says.

    Training: the policy's crop (``rrc-flip``: a random resized crop; otherwise the centred
    square of the image's shorter side) resized to ``size``, then ``crop-flip``'s
    pad-and-crop, then the flip. Evaluation: the centred square resized (a resize of the
    shorter side and a centre crop, without distorting the aspect ratio). With ``resize``
    (the weights' policy), the centred square is the weights' resize and centre crop, and
    the random resized crop resamples with their interpolation. The stock path calls it on
    one image at a time in workers, the ``--decode gpu`` path on a whole batch on the
    device: same draws, same arithmetic.

    Args:
        images: ``B`` uint8 (or ``[-1, 1]`` float) images ``(C, H_i, W_i)``.
        policy: One of :data:`AUGMENTS`.
        size: Output side.
        seed: Base seed of the draws.
        epoch: The epoch.
        index: ``(B,)`` sample indices (the draws' keys).
        train: Augment; False only resizes.
        resize: The weights' resize policy (its ``crop`` must be ``size``); None: the
            centred square.

    Returns:
        ``(B, C, size, size)`` float in ``[-1, 1]``.
    """
    if resize is not None and resize.crop != size:
        raise ValueError(f"{resize} crops to {resize.crop}, not the asked size {size}")
    rrc = train and (policy == "rrc-flip" or policy in AUTO_POLICIES)
    if resize is not None and not rrc:
        x = to_float(torch.stack([resize.evaluate(img) for img in images]))  # (B, C, S, S)
    else:
        heights = torch.tensor([img.shape[-2] for img in images])
        widths = torch.tensor([img.shape[-1] for img in images])
        if rrc:
            boxes = rrc_params(heights, widths, seed, epoch, index)
        else:
            boxes = centre_square(heights, widths)
        mode = resize.interpolation if resize is not None else "bilinear"
        x = resized_crop([to_float(img) for img in images], boxes, size, mode)
    if train and policy != "none":
        x = augment_batch(x, "flip" if policy == "rrc-flip" else policy, seed, epoch, index)
    return x


def _auto_seeds(seed: int, epoch: int, index: Tensor) -> Tensor:
    """One 31-bit seed per sample for the automatic policies' draws."""
    return (keyed_uniform(seed, epoch, index.cpu(), STREAM_AUTO) * 2.0**31).long()


def augment_batch(images: Tensor, policy: str, seed: int, epoch: int, index: Tensor) -> Tensor:
    """Applies a fixed-size policy (``none``, ``flip``, ``crop-flip``, or an automatic one:
    the flip, then the policy) to a float batch."""
    assert policy in ("none", "flip", "crop-flip", *AUTO_POLICIES), (
        f"{policy!r} needs resized_crop, not augment_batch"
    )
    if policy == "none":
        return images
    if policy in AUTO_POLICIES:
        images = flip(images, flip_mask(seed, epoch, index.to(images.device)))
        return auto_augment(images, policy, _auto_seeds(seed, epoch, index))
    if policy == "crop-flip":
        images = pad_crop(images, seed, epoch, index, pad=max(1, images.shape[-1] // 8))
    return flip(images, flip_mask(seed, epoch, index.to(images.device)))
