"""``pix2pix``: paired image-to-image translation (Isola et al.) as one "super network".

As in NVIDIA's pix2pixHD, the generator, the discriminator *and* every loss are submodules of
this one module, and each training phase computes its whole loss inside one call. Wrapped in
DataParallel/DDP (through ``StepModule``), every replica gets its share of the batch and returns
its own losses: nothing but scalars crosses devices.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from torchstyle.errors import UserError
from torchstyle.models import register_model
from torchstyle.models.base import Batch, GANModel
from torchstyle.nn.losses import GANLoss, PerceptualLoss
from torchstyle.nn.networks import PatchGANDiscriminator, ResnetGenerator, Vgg19Features
from torchstyle.nn.ops import init_weights
from torchstyle.spec import DataSpec

log = logging.getLogger(__name__)

# Examples in a sample grid: one column each, as many as the engine's grid has per row.
GRID_COLUMNS = 8
# Floor of the per-sample MSE in PSNR, so a perfect match reads 100 dB instead of inf.
_MIN_MSE = 1e-10


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Turns off ``requires_grad`` of ``module``'s parameters for the ops recorded inside.

    Autograd decides at record time which leaves need a gradient, so restoring the flags on
    exit (before the engine calls ``backward``) still leaves the module out of that backward.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _check_arguments(
    *,
    in_channels: int,
    out_channels: int,
    image_size: int,
    n_downsampling: int,
    lambda_l1: float,
    perceptual_weight: float,
    vgg_weights: str | None,
) -> None:
    """Refuses constructor arguments pix2pix cannot train with (``--model-arg`` values).

    Raises:
        UserError: Naming the argument, its value and what it must be.
    """
    if in_channels <= 0 or out_channels <= 0:
        raise UserError(
            f"channels must be positive, got in_channels={in_channels}, out_channels={out_channels}"
        )
    if image_size % 2**n_downsampling:
        raise UserError(
            f"image_size {image_size} must be a multiple of 2 ** n_downsampling = "
            f"{2**n_downsampling}, or the generator's output size differs from its input's"
        )
    if image_size < 8:
        raise UserError(f"image_size must be at least 8 for the PatchGAN, got {image_size}")
    if not lambda_l1 >= 0:  # written so that NaN fails too
        raise UserError(f"lambda_l1 must be >= 0, got {lambda_l1}")
    if not perceptual_weight >= 0:
        raise UserError(f"perceptual_weight must be >= 0, got {perceptual_weight}")
    if perceptual_weight and out_channels not in (1, 3):
        raise UserError(
            f"the perceptual loss needs 1- or 3-channel outputs, got out_channels={out_channels}"
        )
    if vgg_weights is not None and not os.path.isfile(vgg_weights):
        raise UserError(
            f"vgg_weights file {vgg_weights} does not exist; pass the path of a torchvision "
            "VGG19 state dict, or leave it out to use torchvision's cache file"
        )


def _most_layers(image_size: int, warn_for: int | None = None) -> int:
    """The most PatchGAN layers ``image_size`` allows (``2 ** (n + 2)`` pixels for ``n``);
    logs a warning that ``warn_for`` layers were asked for, when given."""
    fits = int(math.log2(image_size)) - 2
    if warn_for is not None:
        log.warning(
            "pix2pix: n_layers_d=%d needs %d px images; using n_layers_d=%d for %d px",
            warn_for,
            2 ** (warn_for + 2),
            fits,
            image_size,
        )
    return fits


@register_model("pix2pix")
class Pix2Pix(GANModel):
    """Conditional GAN for paired images; ``forward(a)`` translates inputs A into outputs B.

    One training iteration runs phase ``"d"`` (the discriminator learns real pairs
    ``(A, B)`` from generated pairs ``(A, G(A))``), then phase ``"g"`` (the generator fools it,
    plus ``lambda_l1`` times the L1 distance to B, plus an optional perceptual loss), each phase
    with its own optimizer. The discriminator is conditional: it sees A and B concatenated.

    Args:
        in_channels: Channels of the inputs A.
        out_channels: Channels of the outputs B; None means ``in_channels``.
        image_size: Side of the training images; a multiple of ``2 ** n_downsampling``.
        ngf: Generator width (channels after its stem).
        ndf: Discriminator width (channels of its first layer).
        n_blocks: ResnetBlocks in the generator.
        n_downsampling: Stride-2 stages of the generator.
        n_layers_d: Stride-2 layers of the PatchGAN discriminator. Capped (with a warning) so
            the discriminator fits ``image_size``: it needs ``2 ** (n_layers_d + 2)`` pixels.
        gan_mode: ``vanilla``, ``lsgan``, ``hinge`` or ``wgan`` (see GANLoss); pix2pix's
            released models use ``lsgan``.
        lambda_l1: Weight of the L1 loss (100 in the paper).
        perceptual_weight: Weight of a VGG19 perceptual loss; 0 builds no VGG at all.
        vgg_weights: State dict file of a torchvision VGG19 for the perceptual loss; without
            it torchvision's cache file is used, else random weights with a loud warning.
    """

    monitor = ("l1", "min")
    data_layout = "paired"
    default_image_size = 32

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int | None = None,
        image_size: int = 32,
        ngf: int = 32,
        ndf: int = 32,
        n_blocks: int = 6,
        n_downsampling: int = 2,
        n_layers_d: int = 3,
        gan_mode: str = "lsgan",
        lambda_l1: float = 100.0,
        perceptual_weight: float = 0.0,
        vgg_weights: str | None = None,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        _check_arguments(
            in_channels=in_channels,
            out_channels=out_channels,
            image_size=image_size,
            n_downsampling=n_downsampling,
            lambda_l1=lambda_l1,
            perceptual_weight=perceptual_weight,
            vgg_weights=vgg_weights,
        )
        if n_layers_d > _most_layers(image_size):
            n_layers_d = _most_layers(image_size, warn_for=n_layers_d)
            self._use_hparam("n_layers_d", n_layers_d)  # a rebuild from a checkpoint warns no more
        self.lambda_l1 = float(lambda_l1)
        self.perceptual_weight = float(perceptual_weight)
        self.generator = ResnetGenerator(
            in_channels=in_channels,
            out_channels=out_channels,
            ngf=ngf,
            n_downsampling=n_downsampling,
            n_blocks=n_blocks,
        )
        # Conditional: the discriminator judges (A, B) pairs, not B alone, so it can tell a
        # plausible image that does not match its input from the right one.
        self.discriminator = PatchGANDiscriminator(
            in_channels=in_channels + out_channels, ndf=ndf, n_layers=n_layers_d
        )
        init_weights(self.generator, "normal", gain=0.02)
        init_weights(self.discriminator, "normal", gain=0.02)
        self.gan_loss = GANLoss(gan_mode)
        self.l1_loss = nn.L1Loss()
        self.perceptual_loss: PerceptualLoss | None = None
        if perceptual_weight > 0:
            self.perceptual_loss = PerceptualLoss(features=Vgg19Features(weights=vgg_weights))
        # The first test pairs of the latest evaluation, for sample grids. A plain attribute,
        # not a buffer: data, not model state, so checkpoints stay free of it.
        self._sample_pairs: tuple[Tensor, Tensor] | None = None

    @classmethod
    def from_spec(cls, spec: DataSpec, **kwargs: Any) -> Pix2Pix:
        """Builds for a paired dataset: A and B both have the spec's channels."""
        args: dict[str, Any] = {
            "in_channels": spec.channels,
            "out_channels": spec.channels,
            "image_size": spec.image_size,
        }
        args.update(kwargs)
        return cls(**args)

    def forward(self, a: Tensor) -> Tensor:
        """Translates inputs ``(B, in_channels, H, W)`` into outputs ``(B, out_channels, H, W)``
        in ``[-1, 1]``."""
        out: Tensor = self.generator(a)
        return out

    def _judge(self, a: Tensor, b: Tensor) -> Tensor:
        out: Tensor = self.discriminator(
            torch.cat([a, b], dim=1)
        )  # (B, C_in + C_out, H, W) -> patches
        return out

    def training_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        """Runs one phase on a batch of pairs ``(a, b)``; returns ``"loss"`` and its parts.

        Phase ``"d"``: real pairs against generated ones; the generator runs under no_grad
        (its parameters get no gradient, and no graph is kept for it). Phase ``"g"``:
        adversarial + ``lambda_l1`` * L1 (+ perceptual); the discriminator is frozen, so only
        the generator gets gradients. The generator runs again in phase ``"g"``: reusing phase
        ``"d"``'s output would need a graph kept across two module calls, which a replica of
        DataParallel cannot hold.
        """
        a, b = batch
        if phase == "d":
            with torch.no_grad():
                fake = self.generator(a)
            loss_real = self.gan_loss(self._judge(a, b), True)
            loss_fake = self.gan_loss(self._judge(a, fake), False)
            return {
                # Halved as in pix2pix: the discriminator learns at half the generator's rate.
                "loss": 0.5 * (loss_real + loss_fake),
                "loss_d_real": loss_real,
                "loss_d_fake": loss_fake,
            }
        if phase != "g":
            raise ValueError(f"unknown phase {phase!r}; pix2pix trains phases 'd' and 'g'")
        fake = self.generator(a)
        with _frozen(self.discriminator):
            pred = self._judge(a, fake)
        loss_gan = self.gan_loss(pred, True, for_discriminator=False)
        l1 = self.l1_loss(fake, b)
        parts = {"loss_gan": loss_gan, "loss_l1": self.lambda_l1 * l1}
        if self.perceptual_loss is not None:
            parts["loss_perceptual"] = self.perceptual_weight * self.perceptual_loss(fake, b)
        loss = parts["loss_gan"] + parts["loss_l1"]
        if "loss_perceptual" in parts:
            loss = loss + parts["loss_perceptual"]
        # The raw L1 too: it is the number test/l1 reports, so the two curves compare.
        return {"loss": loss, **parts, "l1": l1.detach()}

    @torch.no_grad()
    def evaluation_step(self, batch: Batch) -> dict[str, Tensor]:
        """Per-sample ``l1`` (mean |G(a) - b|, in ``[-1, 1]`` units) and ``psnr`` (dB, on
        images scaled to ``[0, 1]``), each of shape ``(B,)``."""
        a, b = batch
        fake = self.generator(a)
        n = a.shape[0]
        l1 = (fake - b).abs().reshape(n, -1).mean(1)  # (B, C*H*W) -> (B,)
        unit_fake = ((fake + 1) / 2).clamp(0, 1)
        unit_b = ((b + 1) / 2).clamp(0, 1)
        mse = (unit_fake - unit_b).square().reshape(n, -1).mean(1)  # (B, C*H*W) -> (B,)
        psnr = -10.0 * torch.log10(mse.clamp_min(_MIN_MSE))  # 10 log10(1 / mse), peak 1
        self._keep_samples(a, b)
        return {"l1": l1, "psnr": psnr}

    def on_evaluation_start(self) -> None:
        """Starts collecting the new evaluation's sample pairs."""
        self._sample_pairs = None

    def _keep_samples(self, a: Tensor, b: Tensor) -> None:
        # The test split is read in a fixed order, so the first pairs seen are the same at
        # every evaluation and the grids of successive epochs compare. Only shapes are read
        # here: no host-device sync.
        have = 0 if self._sample_pairs is None else self._sample_pairs[0].shape[0]
        if have >= GRID_COLUMNS:
            return
        take = GRID_COLUMNS - have
        new_a, new_b = a[:take].detach().clone(), b[:take].detach().clone()
        if self._sample_pairs is not None:
            new_a = torch.cat([self._sample_pairs[0], new_a])
            new_b = torch.cat([self._sample_pairs[1], new_b])
        self._sample_pairs = (new_a, new_b)

    @torch.no_grad()
    def sample_images(self, num: int) -> Tensor | None:
        """A grid of the first test pairs evaluated: one column per example, with the inputs A
        on the first row, the outputs G(A) on the second and the targets B on the third.

        Args:
            num: Most images to return; ``min(8, num // 3)`` columns, short rows padded
                with black, so rows line up in the engine's 8-per-row grid.

        Returns:
            ``(3 * columns, C, H, W)`` in ``[-1, 1]``, or None before any evaluation.
        """
        columns = min(GRID_COLUMNS, num // 3)
        if self._sample_pairs is None or columns == 0:
            return None
        a, b = (x[:columns] for x in self._sample_pairs)
        was_training = self.generator.training
        self.generator.eval()
        fake = self.generator(a)
        self.generator.train(was_training)
        # One channel count for the grid: RGB if either side is, else the outputs'.
        channels = 3 if 3 in (a.shape[1], b.shape[1]) else b.shape[1]
        n, _, height, width = b.shape
        rows = []
        for row in (a, fake, b):
            if row.shape[1] == 1 and channels != 1:  # a grayscale row shows as gray RGB
                row = row.expand(-1, channels, -1, -1)  # (N, 1, H, W) -> (N, C, H, W)
            elif row.shape[1] != channels:  # e.g. a label map as input: nothing to show
                row = b.new_full((n, channels, height, width), -1.0)
            blank = b.new_full((columns - n, channels, height, width), -1.0)
            rows.append(torch.cat([row, blank]))
        return torch.cat(rows)  # (3 * columns, C, H, W)
