"""The input preprocessing that belongs to a model's weights: normalisation and resize policy.

torchstyle's data paths give images as float in ``[-1, 1]`` (``pixel / 127.5 - 1``), which
is the normalisation ``mean 0.5, std 0.5`` of ``pixel / 255``. Pretrained weights expect
their own: torchvision's weight enums carry it in their ``transforms()``
(``ImageClassification``: resize, centre crop, interpolation, mean, std), timm models in
their pretrained config (``timm.data.resolve_data_config``). With ``--weights`` on a
``torchvision:`` or ``timm:`` model, the weights' mean and std apply; ``--normalize
imagenet|none|MEAN,STD`` overrides.

The normalisation is a forward pre-hook on the model (:func:`install`): the model's state
dict is unchanged, and the run's training, evaluation, ``test`` and ``predict`` all see
``(pixel / 255 - mean) / std``. ``export`` writes the network without the hook, so an
exported program takes normalised images, as :class:`Preprocessing`'s JSON says; with
``--with-preprocessing`` it takes ``pixel / 255`` and normalises itself.

The weights' resize policy (:class:`WeightsPolicy`: resize of the shorter side, centre
crop, interpolation) decides the run's input side when ``--image-size`` is not given, and
the data path reads image files with it (``torchstyle.data.augment.ResizePolicy``); the
record says so (``resize``, ``size_from``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchstyle's own [-1, 1] images, as a normalisation of pixel / 255.
NEUTRAL = 0.5


@dataclass
class WeightsPolicy:
    """How the weights' library evaluates an image (resize, centre crop, interpolation).

    Attributes:
        resize: The shorter side is resized to this.
        crop: Then the centre ``crop x crop`` square is taken.
        interpolation: ``bilinear``, ``bicubic`` or ``nearest``.
        source: Where it was read (``torchvision ResNet18_Weights.IMAGENET1K_V1``...).
    """

    resize: int
    crop: int
    interpolation: str
    source: str

    def at_size(self, size: int) -> WeightsPolicy:
        """The policy for input side ``size``: the resize keeps the weights' ratio to the
        crop (timm's ``crop_pct``), the interpolation stays."""
        if size == self.crop:
            return self
        resize = max(size, size * self.resize // self.crop)
        return WeightsPolicy(resize, size, self.interpolation, self.source)


@dataclass
class Preprocessing:
    """What a run's model expects, written next to its weights as JSON.

    Attributes:
        size: The model's input side (the longer one; ``height`` and ``width`` give both).
        channel_order: ``RGB`` or ``gray``.
        mean: Per-channel mean subtracted from ``pixel / 255``.
        std: Per-channel standard deviation it is divided by.
        normalize: Where the mean and std came from (``weights``, ``imagenet``, ``none``,
            ``custom``).
        source: The metadata they were read from, when they came from the weights.
        weights_policy: The weights' own resize and crop, when known.
    """

    size: int
    channel_order: str
    mean: list[float]
    std: list[float]
    normalize: str
    source: str = ""
    weights_policy: dict[str, Any] | None = None
    # How torchstyle's runs resize an image file (data/augment.py: the centred square of the
    # shorter side, resized with antialiased bilinear interpolation).
    crop: str = "centre square of the shorter side"
    interpolation: str = "bilinear, antialiased"
    value_range: str = "pixel / 255, then (x - mean) / std per channel"
    extra: dict[str, Any] = field(default_factory=dict)
    # The input's height and width (non-square data; 0: ``size`` x ``size``).
    height: int = 0
    width: int = 0
    # The weights' policy as the run applies it to image files: the shorter side resized to
    # ``resize`` (with ``interpolation``'s first word), then the centre ``size`` square;
    # 0: the centred square of the shorter side resized to ``size``.
    resize: int = 0
    # Where ``size`` came from (``--image-size``, the weights' crop, the data).
    size_from: str = ""

    def resize_args(self) -> tuple[int, int, str] | None:
        """``(resize, crop, interpolation)`` of the weights' policy the run applies, if any."""
        if not self.resize:
            return None
        return self.resize, self.size, self.interpolation.split(",")[0].strip()

    @property
    def neutral(self) -> bool:
        """Whether this is torchstyle's own ``[-1, 1]`` (nothing to install)."""
        return all(m == NEUTRAL for m in self.mean) and all(s == NEUTRAL for s in self.std)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return asdict(self)

    def flag_value(self) -> str:
        """The resolved ``--normalize`` value the run records."""
        if self.neutral:
            return "none"
        return ",".join(f"{v:g}" for v in [*self.mean, *self.std])


def _per_channel(values: list[float], channels: int) -> list[float]:
    if len(values) == channels:
        return list(values)
    if len(values) == 1:
        return values * channels
    if channels == 1:  # RGB statistics on gray images: their mean
        return [sum(values) / len(values)]
    from torchstyle.errors import UserError

    raise UserError(
        f"--normalize gives {len(values)} values per statistic for {channels}-channel images; "
        f"give 1 or {channels}"
    )


def torchvision_policy(name: str) -> tuple[WeightsPolicy, list[float], list[float]]:
    """The default weights' transform of torchvision model ``name`` (no download)."""
    from torchvision import models

    weights = models.get_model_weights(name).DEFAULT
    t = weights.transforms()
    policy = WeightsPolicy(
        resize=int(t.resize_size[0]),
        crop=int(t.crop_size[0]),
        interpolation=str(t.interpolation.value),
        source=f"torchvision {type(weights).__name__}.{weights.name}",
    )
    return policy, list(t.mean), list(t.std)


_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def timm_policy(name: str) -> tuple[WeightsPolicy, list[float], list[float]]:
    """timm's data config of model ``name`` (``arch`` or ``arch.tag``), read from its
    pretrained config as ``timm.data.resolve_data_config`` reads it (no model, no download)."""
    from timm.data.config import resolve_data_config
    from timm.models import get_pretrained_cfg

    pretrained = get_pretrained_cfg(name)
    as_dict = pretrained.to_dict() if pretrained is not None else {}  # type: ignore[no-untyped-call]
    cfg = resolve_data_config(pretrained_cfg=as_dict)  # type: ignore[no-untyped-call]
    crop = int(cfg["input_size"][-1])
    interpolation = str(cfg["interpolation"])
    policy = WeightsPolicy(
        resize=math.floor(crop / float(cfg["crop_pct"])),
        crop=crop,
        # timm's "random" (a random mode per image) is for training: evaluate bilinear.
        interpolation=interpolation if interpolation in _INTERPOLATIONS else "bilinear",
        source=f"timm {name} pretrained config",
    )
    return policy, list(cfg["mean"]), list(cfg["std"])


def library_policy(model_spec: str) -> tuple[WeightsPolicy, list[float], list[float]] | None:
    """The weights' policy, mean and std of a ``torchvision:``/``timm:`` model; None for
    any other ``--model``."""
    lib, _, name = model_spec.partition(":")
    if lib == "torchvision":
        return torchvision_policy(name)
    if lib == "timm":
        return timm_policy(name)
    return None


def resolve(
    model_spec: str,
    *,
    weights: str | None,
    normalize: str | None,
    channels: int,
    size: int,
    applied: WeightsPolicy | None = None,
    size_from: str = "",
) -> Preprocessing:
    """The run's preprocessing: ``--normalize`` if given, else the weights' own (a
    ``torchvision:``/``timm:`` model with ``--weights``), else torchstyle's ``[-1, 1]``.

    Args:
        model_spec: ``--model``.
        weights: ``--weights``.
        normalize: ``--normalize``.
        channels: The data's channels.
        size: The model's input side.
        applied: The weights' resize policy the run's image files are read with (at
            ``size``), if any.
        size_from: Where ``size`` came from, for the record.
    """
    found = library_policy(model_spec)
    policy = found[0] if found is not None else None
    mean: list[float] = [NEUTRAL]
    std: list[float] = [NEUTRAL]
    kind = "none"
    if normalize in (None, "weights") and weights and found is not None:
        mean, std, kind = found[1], found[2], "weights"
    elif normalize == "imagenet":
        mean, std, kind = list(IMAGENET_MEAN), list(IMAGENET_STD), "imagenet"
    elif normalize not in (None, "none", "weights"):
        values = [float(v) for v in normalize.split(",")]
        half = len(values) // 2
        mean, std, kind = values[:half], values[half:], "custom"
    pre = Preprocessing(
        size=size,
        channel_order="RGB" if channels == 3 else "gray" if channels == 1 else f"{channels}-ch",
        mean=_per_channel(mean, channels),
        std=_per_channel(std, channels),
        normalize=kind,
        source=policy.source if policy is not None and kind == "weights" else "",
        weights_policy=asdict(policy) if policy is not None else None,
        size_from=size_from,
    )
    if applied is not None:
        pre.resize = applied.resize
        pre.crop = f"the centre {size}x{size} after resizing the shorter side to {applied.resize}"
        pre.interpolation = f"{applied.interpolation}, antialiased (PIL's resampling)"
    return pre


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for images ``(B, C, H, W)``."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    mean: Tensor
    std: Tensor

    def forward(self, x: Tensor) -> Tensor:
        """Normalised ``x``."""
        return (x - self.mean) / self.std


_HANDLE = "_torchstyle_preprocessing"
_RECORD = "_torchstyle_preprocessing_record"


def install(model: nn.Module, pre: Preprocessing) -> None:
    """Makes ``model`` take torchstyle's ``[-1, 1]`` images and see them normalised as
    ``pre`` says (a forward pre-hook; nothing for the neutral normalisation). The model
    keeps ``pre`` (:func:`installed`), so whatever feeds it image files resizes them so."""
    remove(model)
    model.__dict__[_RECORD] = pre
    if pre.neutral:
        return
    mean = torch.tensor(pre.mean).view(1, -1, 1, 1)
    std = torch.tensor(pre.std).view(1, -1, 1, 1)

    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x, *rest = args
        unit = (x + 1.0) * 0.5  # [-1, 1] -> pixel / 255
        return ((unit - mean.to(x)) / std.to(x), *rest)

    model.__dict__[_HANDLE] = model.register_forward_pre_hook(hook)


def remove(model: nn.Module) -> None:
    """Removes what :func:`install` added (the exported network takes normalised images)."""
    handle = model.__dict__.pop(_HANDLE, None)
    if handle is not None:
        handle.remove()


def installed(model: nn.Module) -> Preprocessing | None:
    """The preprocessing :func:`install` gave ``model`` (None when it was given none)."""
    pre = model.__dict__.get(_RECORD)
    return pre if isinstance(pre, Preprocessing) else None


def from_state(state: dict[str, Any]) -> Preprocessing | None:
    """The preprocessing a checkpoint was trained with (None for a run without a record)."""
    rec = state.get("preprocessing")
    if not isinstance(rec, dict):
        return None
    return Preprocessing(**rec)
