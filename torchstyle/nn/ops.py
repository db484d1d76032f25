"""Small functions on tensors and modules: initialisation, one-hot, freezing, counting."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from torchstyle.nn.errors import ArgumentError

__all__ = ["INIT_TYPES", "count_parameters", "freeze", "init_weights", "one_hot", "unfreeze"]

# Layers whose weight is a kernel, and those whose weight is a per-channel scale around 1.
_WEIGHT_LAYERS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)
_NORM_LAYERS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
)

# One initialiser per name; a new scheme is a new entry.
_INITIALISERS: dict[str, Callable[[Tensor, float], object]] = {
    "normal": lambda w, gain: nn.init.normal_(w, 0.0, gain),
    "xavier": lambda w, gain: nn.init.xavier_normal_(w, gain=gain),
    # Kaiming derives its scale from the fan-in, so ``gain`` does not apply.
    "kaiming": lambda w, gain: nn.init.kaiming_normal_(w, a=0, mode="fan_in"),
    "orthogonal": lambda w, gain: nn.init.orthogonal_(w, gain=gain),
}
INIT_TYPES = tuple(_INITIALISERS)


def _raw_weight(module: nn.Module) -> Tensor:
    # A spectrally normalised weight is computed on the fly; initialise the stored original.
    if parametrize.is_parametrized(module, "weight"):
        return module.get_parameter("parametrizations.weight.original")
    return module.get_parameter("weight")


def init_weights(module: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialises every convolution, linear and normalisation layer in ``module`` in place.

    Convolution and linear weights follow ``init_type``; normalisation weights are drawn from
    ``N(1, gain)`` (DCGAN/pix2pix practice); all biases become 0.

    Args:
        module: The module whose submodules are initialised (itself included).
        init_type: ``"normal"`` (``N(0, gain)``), ``"xavier"``, ``"kaiming"`` or ``"orthogonal"``.
        gain: Standard deviation for ``normal`` and norm layers; gain for ``xavier`` and
            ``orthogonal``; unused by ``kaiming``.

    Returns:
        ``module``, for chaining.
    """
    if init_type not in _INITIALISERS:
        raise ArgumentError(
            f"unknown init_type {init_type!r}; choose from {', '.join(_INITIALISERS)}"
        )
    if not gain > 0:  # written so that NaN fails too
        raise ArgumentError(f"gain must be positive, got {gain}")
    initialise = _INITIALISERS[init_type]
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, _WEIGHT_LAYERS):
                initialise(_raw_weight(m), gain)
            elif isinstance(m, _NORM_LAYERS) and getattr(m, "weight", None) is not None:
                nn.init.normal_(m.weight, 1.0, gain)
            else:
                continue
            bias = getattr(m, "bias", None)
            if bias is not None:
                nn.init.zeros_(bias)
    return module


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """One-hot encodes integer labels along a new channel dimension 1.

    Args:
        labels: Integer labels, ``(B,)`` or a label map ``(B, H, W)`` (any ``(B, *S)`` works),
            with values in ``[0, num_classes)``.
        num_classes: Number of classes ``C``.

    Returns:
        Float tensor ``(B, C)`` or ``(B, C, H, W)`` (``(B, C, *S)``) on the labels' device.
    """
    if not (not labels.is_floating_point() and not labels.is_complex()):
        raise ArgumentError(f"labels must be an integer tensor, got {labels.dtype}")
    if not (labels.dim() >= 1):
        raise ArgumentError("labels need a batch dimension")
    if num_classes <= 0:
        raise ArgumentError(f"num_classes must be positive, got {num_classes}")
    # scatter_ rather than F.one_hot: it puts the classes on dim 1 without a permute copy, and
    # checks the label range on the device instead of with a host-device sync.
    index = labels.long().unsqueeze(1)  # (B, 1, *S)
    out = torch.zeros(
        (labels.shape[0], num_classes, *labels.shape[1:]), device=labels.device
    )  # (B, C, *S)
    return out.scatter_(1, index, 1.0)


def freeze(module: nn.Module, *, eval_mode: bool = True) -> nn.Module:
    """Stops ``module`` from learning: no gradients, and (by default) evaluation mode.

    A frozen network (the guide's fixed VGG) should also stop updating BatchNorm running
    statistics and stop dropping units, hence ``eval()``. Caveat: a later ``.train()`` on a
    parent module switches the child back to training mode; call ``freeze`` again after it, or
    pass ``eval_mode=False`` when the mode is managed elsewhere.

    Args:
        module: Module to freeze in place.
        eval_mode: Also call ``module.eval()``.

    Returns:
        ``module``, for chaining.
    """
    module.requires_grad_(False)
    if eval_mode:
        module.eval()
    return module


def unfreeze(module: nn.Module, *, train_mode: bool = True) -> nn.Module:
    """Undoes :func:`freeze`: gradients again, and (by default) training mode.

    Args:
        module: Module to unfreeze in place.
        train_mode: Also call ``module.train()``.

    Returns:
        ``module``, for chaining.
    """
    module.requires_grad_(True)
    if train_mode:
        module.train()
    return module


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Counts the parameters of ``module``; shared parameters count once.

    Args:
        module: Module to count.
        trainable_only: Count only parameters with ``requires_grad``.

    Returns:
        The number of scalar parameters.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
