"""``dcgan``: DCGAN (Radford et al.) with the guide's GANLoss; two optimizers, alternated."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from torchstyle.models import register_model
from torchstyle.models.base import Batch, GANModel
from torchstyle.nn.losses import GANLoss
from torchstyle.nn.networks import DCGANDiscriminator, DCGANGenerator
from torchstyle.nn.ops import init_weights
from torchstyle.spec import DataSpec

NUM_FIXED_SAMPLES = 64


@register_model("dcgan")
class DCGAN(GANModel):
    """Generator and discriminator; ``forward(z)`` generates images in ``[-1, 1]``.

    One training iteration runs phase ``"d"`` (discriminator on real and generated images),
    then phase ``"g"`` (generator through the discriminator), each with its own optimizer.

    Args:
        in_channels: Image channels (the generator's output channels).
        image_size: 32 or 64.
        latent_dim: Size of the noise vector.
        base_width: Channel width of both networks.
        gan_mode: ``vanilla``, ``lsgan``, ``hinge`` or ``wgan`` (see GANLoss).
        spectral: Spectral normalization on the discriminator.
    """

    # The discriminator's accuracy says little about sample quality; keep the latest instead.
    default_image_size = 32
    fixed_z: Tensor  # a buffer

    def __init__(
        self,
        *,
        in_channels: int = 3,
        image_size: int = 32,
        latent_dim: int = 100,
        base_width: int = 64,
        gan_mode: str = "vanilla",
        spectral: bool = False,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.generator = DCGANGenerator(
            latent_dim=latent_dim,
            out_channels=in_channels,
            image_size=image_size,
            base_width=base_width,
        )
        self.discriminator = DCGANDiscriminator(
            in_channels=in_channels,
            image_size=image_size,
            base_width=base_width,
            spectral=spectral,
        )
        init_weights(self.generator, "normal", gain=0.02)
        init_weights(self.discriminator, "normal", gain=0.02)
        self.gan_loss = GANLoss(gan_mode)
        # Fixed noise, saved with the model, so sample grids are comparable across a resume.
        self.register_buffer("fixed_z", torch.randn(NUM_FIXED_SAMPLES, latent_dim))

    @classmethod
    def from_spec(cls, spec: DataSpec, **kwargs: Any) -> DCGAN:
        """Builds for a dataset; the class labels are not used."""
        args: dict[str, Any] = {"in_channels": spec.channels, "image_size": spec.image_size}
        args.update(kwargs)
        return cls(**args)

    def forward(self, z: Tensor) -> Tensor:
        """Generates images ``(B, C, S, S)`` from noise ``(B, latent_dim)``."""
        out: Tensor = self.generator(z)
        return out

    def _noise(self, n: int, like: Tensor) -> Tensor:
        return torch.randn(n, self.latent_dim, device=like.device, dtype=like.dtype)

    def training_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        """Phase ``d``: real vs generated (generator frozen). Phase ``g``: fool the critic."""
        real = batch[0]
        z = self._noise(real.shape[0], real)
        if phase == "d":
            with torch.no_grad():
                fake = self.generator(z)
            loss_real = self.gan_loss(self.discriminator(real), True)
            loss_fake = self.gan_loss(self.discriminator(fake), False)
            return {
                "loss": loss_real + loss_fake,
                "loss_d_real": loss_real,
                "loss_d_fake": loss_fake,
            }
        if phase != "g":
            raise ValueError(f"unknown phase {phase!r}")
        pred = self.discriminator(self.generator(z))
        return {"loss": self.gan_loss(pred, True, for_discriminator=False)}

    @torch.no_grad()
    def evaluation_step(self, batch: Batch) -> dict[str, Tensor]:
        """Per-sample discriminator scores on real test images and as many generated ones."""
        real = batch[0]
        fake = self.generator(self._noise(real.shape[0], real))
        d_real = self.discriminator(real).reshape(real.shape[0], -1).mean(1)  # (B,)
        d_fake = self.discriminator(fake).reshape(real.shape[0], -1).mean(1)  # (B,)
        return {"d_real": torch.sigmoid(d_real), "d_fake": torch.sigmoid(d_fake)}

    @torch.no_grad()
    def sample_images(self, num: int) -> Tensor:
        """Images from the fixed noise, generator in eval mode."""
        was_training = self.generator.training
        self.generator.eval()
        images: Tensor = self.generator(self.fixed_z[:num])
        self.generator.train(was_training)
        return images
