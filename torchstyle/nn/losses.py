"""Losses as ``nn.Module`` s, so they can live inside a network (the guide's losses.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchstyle.nn.errors import ArgumentError
from torchstyle.nn.layers import LayerType
from torchstyle.nn.networks import Vgg19Features

__all__ = ["GAN_MODES", "CustomLoss", "GANLoss", "PerceptualLoss", "gradient_penalty"]


class CustomLoss(nn.Module):
    """The guide's custom loss: mean squared error, ``mean((x - y) ** 2)``."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Computes the loss.

        Args:
            x: Prediction.
            y: Target, broadcastable to ``x``.

        Returns:
            Scalar loss.
        """
        loss = torch.mean((x - y) ** 2)
        return loss


# Input ranges a perceptual loss accepts, with the map from that range to [0, 1].
_TO_UNIT_RANGE: dict[str, Callable[[Tensor], Tensor]] = {
    "[-1,1]": lambda x: (x + 1.0) / 2.0,
    "[0,1]": lambda x: x,
}


class PerceptualLoss(nn.Module):
    """Weighted distance between VGG19 features of two images (Johnson et al. 2016).

    Both images are mapped to ``[0, 1]``, 1-channel images are repeated to 3 channels, and both
    are normalised with the ImageNet mean and std that VGG was trained with. Target features
    are computed without gradient.

    Args:
        features: The feature extractor; ``None`` builds :class:`Vgg19Features` (which warns
            loudly when it finds no pretrained weights).
        layer_weights: Weight of each of the three feature distances.
        criterion: Distance type, called without arguments (``nn.L1Loss``, ``nn.MSELoss``).
        input_range: ``"[-1,1]"`` (tanh generators) or ``"[0,1]"``.
    """

    def __init__(
        self,
        *,
        features: Vgg19Features | None = None,
        layer_weights: Sequence[float] = (1.0, 1.0, 1.0),
        criterion: LayerType = nn.L1Loss,
        input_range: str = "[-1,1]",
    ) -> None:
        super().__init__()
        if not (len(layer_weights) == 3):
            raise ArgumentError(
                f"layer_weights needs one weight per VGG slice (3), got {len(layer_weights)}"
            )
        if not (all(w >= 0 for w in layer_weights)):
            raise ArgumentError(f"layer_weights must be >= 0: {layer_weights}")
        if input_range not in _TO_UNIT_RANGE:
            raise ArgumentError(
                f"input_range must be one of {sorted(_TO_UNIT_RANGE)}, got {input_range!r}"
            )
        self.features = features if features is not None else Vgg19Features()
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.criterion = criterion()
        self.input_range = input_range
        # Not persistent: constants, not state, so checkpoints stay free of them.
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # (1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)  # (1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def _prepare(self, x: Tensor) -> Tensor:
        if not (x.dim() == 4 and x.shape[1] in (1, 3)):
            raise ArgumentError(
                f"PerceptualLoss expects (B, 1|3, H, W) images, got {tuple(x.shape)}"
            )
        x = _TO_UNIT_RANGE[self.input_range](x)
        x = x.expand(-1, 3, -1, -1)  # (B, 3, H, W); a no-op view for 3-channel input
        return (x - self.mean) / self.std

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Computes the loss.

        Args:
            input: Generated images ``(B, 1|3, H, W)``; gradients flow into them.
            target: Reference images of the same shape.

        Returns:
            Scalar loss.
        """
        if not (input.shape == target.shape):
            raise ArgumentError(
                f"input and target shapes differ: {tuple(input.shape)} vs {tuple(target.shape)}"
            )
        input_features = self.features(self._prepare(input))
        with torch.no_grad():
            target_features = self.features(self._prepare(target))
        loss = input.new_zeros(())
        for weight, x, y in zip(self.layer_weights, input_features, target_features, strict=True):
            loss = loss + weight * self.criterion(x, y)
        return loss


def _vanilla(prediction: Tensor, target_is_real: bool, for_discriminator: bool) -> Tensor:
    target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
    return F.binary_cross_entropy_with_logits(prediction, target)


def _lsgan(prediction: Tensor, target_is_real: bool, for_discriminator: bool) -> Tensor:
    target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
    return F.mse_loss(prediction, target)


def _hinge(prediction: Tensor, target_is_real: bool, for_discriminator: bool) -> Tensor:
    if not for_discriminator:
        # The generator's hinge loss has no margin: it just raises the critic's score.
        return -prediction.mean()
    sign = 1.0 if target_is_real else -1.0
    return F.relu(1.0 - sign * prediction).mean()


def _wgan(prediction: Tensor, target_is_real: bool, for_discriminator: bool) -> Tensor:
    return -prediction.mean() if target_is_real else prediction.mean()


# One function per mode; a new GAN objective is a new entry.
_GAN_LOSSES: dict[str, Callable[[Tensor, bool, bool], Tensor]] = {
    "vanilla": _vanilla,
    "lsgan": _lsgan,
    "hinge": _hinge,
    "wgan": _wgan,
}
GAN_MODES = tuple(_GAN_LOSSES)


class GANLoss(nn.Module):
    """Adversarial losses on raw discriminator outputs (logits / critic scores).

    ======== ====================== ====================== ===================
    mode     D, real                D, fake                G (target real)
    ======== ====================== ====================== ===================
    vanilla  BCEWithLogits(x, 1)    BCEWithLogits(x, 0)    BCEWithLogits(x, 1)
    lsgan    mean((x - 1)^2)        mean(x^2)              mean((x - 1)^2)
    hinge    mean(relu(1 - x))      mean(relu(1 + x))      -mean(x)
    wgan     -mean(x)               mean(x)                -mean(x)
    ======== ====================== ====================== ===================

    Args:
        mode: ``"vanilla"``, ``"lsgan"``, ``"hinge"`` or ``"wgan"``.
    """

    def __init__(self, mode: str = "vanilla") -> None:
        super().__init__()
        if mode not in _GAN_LOSSES:
            raise ArgumentError(f"unknown GAN mode {mode!r}; choose from {', '.join(GAN_MODES)}")
        self.mode = mode
        self._loss = _GAN_LOSSES[mode]

    def forward(
        self, prediction: Tensor, target_is_real: bool, for_discriminator: bool = True
    ) -> Tensor:
        """Computes the loss.

        Args:
            prediction: Discriminator output, any shape (``(B,)`` or a PatchGAN map).
            target_is_real: Whether ``prediction`` should be judged real. The generator passes
                ``True``: it wants its samples to be judged real.
            for_discriminator: ``False`` when training the generator (matters for ``hinge``).

        Returns:
            Scalar loss.
        """
        if not (for_discriminator or target_is_real):
            raise ArgumentError(
                "the generator's loss asks for its samples to be judged real: "
                "pass target_is_real=True with for_discriminator=False"
            )
        return self._loss(prediction, target_is_real, for_discriminator)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def gradient_penalty(
    critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, *, weight: float = 10.0
) -> Tensor:
    """WGAN-GP gradient penalty (Gulrajani et al. 2017).

    Penalises the critic's gradient norm at random points between real and fake samples for
    deviating from 1. The graph is kept (``create_graph=True``) so the penalty trains the
    critic; real and fake are detached, so it never trains the generator.

    Args:
        critic: The critic; maps ``(B, ...)`` samples to one score per sample (any shape that
            keeps samples independent).
        real: Real samples ``(B, ...)``.
        fake: Generated samples, same shape.
        weight: Penalty weight (lambda; 10 in the paper).

    Returns:
        Scalar ``weight * mean_b((||grad_b||_2 - 1)^2)``.
    """
    if not (real.shape == fake.shape):
        raise ArgumentError(
            f"real and fake shapes differ: {tuple(real.shape)} vs {tuple(fake.shape)}"
        )
    batch = real.shape[0]
    # One mixing coefficient per sample, broadcast over its other dimensions.
    alpha = torch.rand((batch,) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
    interpolated = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(interpolated)
    (gradients,) = torch.autograd.grad(
        outputs=scores,
        inputs=interpolated,
        grad_outputs=torch.ones_like(scores),
        create_graph=True,
    )
    gradients = gradients.reshape(batch, -1)  # (B, D): one flattened gradient per sample
    return weight * ((gradients.norm(2, dim=1) - 1.0) ** 2).mean()
