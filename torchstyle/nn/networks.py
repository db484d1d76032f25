"""Networks assembled from the blocks in :mod:`torchstyle.nn.layers`.

Each network builds a list of layers and wraps it in ``nn.Sequential(*layers)``, as the guide
does; finished models (``torchstyle.models``) combine these networks with losses.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from torchstyle.nn.errors import ArgumentError, require
from torchstyle.nn.layers import ConvBlock, LayerType, ResnetBlock

__all__ = [
    "VGG19_CACHE_FILENAME",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "PatchGANDiscriminator",
    "ResNetClassifier",
    "ResnetGenerator",
    "SimpleNetwork",
    "Vgg19Features",
]

logger = logging.getLogger(__name__)

# The file torchvision writes for VGG19_Weights.IMAGENET1K_V1 under torch.hub.get_dir()/checkpoints.
VGG19_CACHE_FILENAME = "vgg19-dcbb9e9d.pth"

# LeakyReLU(0.2) is what DCGAN and pix2pix discriminators use; partial keeps it a layer type.
_LeakyReLU02 = functools.partial(nn.LeakyReLU, 0.2)


class SimpleNetwork(nn.Module):
    """The guide's simple network: one ConvBlock, then ``num_resnet_blocks`` ResnetBlocks.

    Args:
        in_channels: Input channels.
        dim: Channels of the ConvBlock output and of every ResnetBlock.
        num_resnet_blocks: Number of ResnetBlocks.
        norm_layer: Normalisation type for all blocks.
        padding_type: Padding of the ResnetBlocks (``"reflect"``, ``"replicate"``, ``"zero"``).
        use_dropout: Dropout inside the ResnetBlocks.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        dim: int = 64,
        num_resnet_blocks: int = 6,
        norm_layer: LayerType = nn.BatchNorm2d,
        padding_type: str = "reflect",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if not (in_channels > 0 and dim > 0):
            raise ArgumentError(f"channels must be positive, got {in_channels}, {dim}")
        if num_resnet_blocks < 0:
            raise ArgumentError(f"num_resnet_blocks must be >= 0, got {num_resnet_blocks}")
        layers: list[nn.Module] = [
            ConvBlock(in_channels=in_channels, out_channels=dim, norm_layer=norm_layer)
        ]
        for _ in range(num_resnet_blocks):
            layers += [
                ResnetBlock(
                    dim=dim,
                    padding_type=padding_type,
                    norm_layer=norm_layer,
                    use_dropout=use_dropout,
                )
            ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Runs the network.

        Args:
            x: Input ``(B, in_channels, H, W)``.

        Returns:
            Features ``(B, dim, H, W)``.
        """
        out: Tensor = self.net(x)
        return out


class ResnetGenerator(nn.Module):
    """Image-to-image ResNet generator (CycleGAN / pix2pixHD global generator).

    7x7 stem, ``n_downsampling`` stride-2 convolutions, ``n_blocks`` ResnetBlocks, as many
    transposed convolutions back up, and a 7x7 convolution with ``tanh`` output in ``[-1, 1]``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        ngf: Channels after the stem; doubled at every downsampling.
        n_downsampling: Number of stride-2 downsamplings; inputs must be divisible by
            ``2 ** n_downsampling`` so that the output has the input's size.
        n_blocks: Number of ResnetBlocks at the lowest resolution.
        norm_layer: Normalisation type.
        use_dropout: Dropout inside the ResnetBlocks.
        padding_type: Padding of the ResnetBlocks.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        ngf: int = 64,
        n_downsampling: int = 2,
        n_blocks: int = 6,
        norm_layer: LayerType = nn.InstanceNorm2d,
        use_dropout: bool = False,
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        require(
            in_channels > 0 and out_channels > 0 and ngf > 0,
            f"channels must be positive, got in={in_channels} out={out_channels} ngf={ngf}",
        )
        require(n_downsampling >= 0, f"n_downsampling must be >= 0, got {n_downsampling}")
        require(n_blocks >= 0, f"n_blocks must be >= 0, got {n_blocks}")
        self.n_downsampling = n_downsampling
        # conv -> norm -> act, the CycleGAN order (the norm sees the raw convolution output).
        block = functools.partial(ConvBlock, order="cna", norm_layer=norm_layer)
        # Reflection padding at the borders avoids the dark frame zero padding paints on images.
        layers: list[nn.Module] = [
            block(
                in_channels=in_channels,
                out_channels=ngf,
                kernel_size=7,
                padding=3,
                padding_mode="reflect",
            )
        ]
        layers += _resnet_trunk(
            block,
            ngf=ngf,
            n_downsampling=n_downsampling,
            n_blocks=n_blocks,
            norm_layer=norm_layer,
            use_dropout=use_dropout,
            padding_type=padding_type,
        )
        layers += [
            ConvBlock(
                in_channels=ngf,
                out_channels=out_channels,
                kernel_size=7,
                padding=3,
                padding_mode="reflect",
                order="ca",
                norm_layer=None,
                activation=nn.Tanh,
            )
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Translates an image.

        Args:
            x: Input ``(B, in_channels, H, W)`` with ``H`` and ``W`` divisible by
                ``2 ** n_downsampling``.

        Returns:
            Output ``(B, out_channels, H, W)`` in ``[-1, 1]``.
        """
        factor = 2**self.n_downsampling
        if not (x.shape[-2] % factor == 0 and x.shape[-1] % factor == 0):
            raise ArgumentError(
                f"input size {tuple(x.shape[-2:])} must be divisible by 2**n_downsampling={factor}"
            )
        out: Tensor = self.model(x)
        return out


def _resnet_trunk(
    block: Callable[..., nn.Module],
    *,
    ngf: int,
    n_downsampling: int,
    n_blocks: int,
    norm_layer: LayerType,
    use_dropout: bool,
    padding_type: str,
) -> list[nn.Module]:
    """A ResnetGenerator's middle: stride-2 downsampling, residual blocks, upsampling back."""
    layers: list[nn.Module] = []
    for i in range(n_downsampling):
        mult = 2**i
        layers += [block(in_channels=ngf * mult, out_channels=ngf * mult * 2, stride=2)]
    mult = 2**n_downsampling
    for _ in range(n_blocks):
        layers += [
            ResnetBlock(
                dim=ngf * mult,
                padding_type=padding_type,
                norm_layer=norm_layer,
                use_dropout=use_dropout,
            )
        ]
    for i in range(n_downsampling):
        mult = 2 ** (n_downsampling - i)
        layers += [
            block(
                in_channels=ngf * mult,
                out_channels=ngf * mult // 2,
                stride=2,
                transpose=True,
                output_padding=1,
            )
        ]
    return layers


def _num_doublings(image_size: int) -> int:
    """Stride-2 steps between a 4x4 map and ``image_size`` (3 for 32, 4 for 64)."""
    if image_size not in (32, 64):
        raise ArgumentError(f"image_size must be 32 or 64, got {image_size}")
    return (image_size // 4).bit_length() - 1


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016): transposed convolutions, BatchNorm, ReLU, tanh.

    Args:
        latent_dim: Size of the noise vector.
        out_channels: Image channels.
        image_size: Output size, 32 or 64.
        base_width: Channels of the last hidden layer; earlier layers double it.
    """

    def __init__(
        self,
        *,
        latent_dim: int = 100,
        out_channels: int = 3,
        image_size: int = 64,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if latent_dim <= 0:
            raise ArgumentError(f"latent_dim must be positive, got {latent_dim}")
        if not (out_channels > 0 and base_width > 0):
            raise ArgumentError(
                f"channels must be positive, got out={out_channels} base_width={base_width}"
            )
        n = _num_doublings(image_size)
        self.latent_dim = latent_dim
        up = functools.partial(ConvBlock, kernel_size=4, order="cna", transpose=True)
        width = base_width * 2 ** (n - 1)
        # A 4x4 kernel on the 1x1 noise "image" projects it to a 4x4 map.
        layers: list[nn.Module] = [
            up(in_channels=latent_dim, out_channels=width, stride=1, padding=0)
        ]
        for _ in range(n - 1):
            layers += [up(in_channels=width, out_channels=width // 2, stride=2, padding=1)]
            width //= 2
        layers += [
            up(
                in_channels=width,
                out_channels=out_channels,
                stride=2,
                padding=1,
                bias=False,
                norm_layer=None,
                activation=nn.Tanh,
            )
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """Generates images from noise.

        Args:
            z: Noise ``(B, latent_dim)`` or ``(B, latent_dim, 1, 1)``.

        Returns:
            Images ``(B, out_channels, image_size, image_size)`` in ``[-1, 1]``.
        """
        if not (z.dim() in (2, 4) and z.shape[1] == self.latent_dim):
            raise ArgumentError(
                f"expected noise (B, {self.latent_dim}) or (B, {self.latent_dim}, 1, 1), "
                f"got {tuple(z.shape)}"
            )
        z = z.view(z.shape[0], self.latent_dim, 1, 1)  # (B, latent_dim, 1, 1)
        out: Tensor = self.net(z)
        return out


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: stride-2 convolutions, BatchNorm, LeakyReLU(0.2); one logit per image.

    Args:
        in_channels: Image channels.
        image_size: Input size, 32 or 64.
        base_width: Channels of the first layer; later layers double it.
        spectral: Spectral normalisation on every convolution; it then replaces BatchNorm
            (SNGAN), since both constrain the discriminator and BatchNorm couples the samples.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        image_size: int = 64,
        base_width: int = 64,
        spectral: bool = False,
    ) -> None:
        super().__init__()
        if not (in_channels > 0 and base_width > 0):
            raise ArgumentError(
                f"channels must be positive, got in={in_channels} base_width={base_width}"
            )
        n = _num_doublings(image_size)
        self.image_size = image_size
        down = functools.partial(
            ConvBlock,
            kernel_size=4,
            stride=2,
            padding=1,
            order="cna",
            activation=_LeakyReLU02,
            spectral=spectral,
        )
        norm_layer = None if spectral else nn.BatchNorm2d
        # No norm on the first layer (DCGAN): it would normalise away the input's colour.
        layers: list[nn.Module] = [
            down(in_channels=in_channels, out_channels=base_width, norm_layer=None)
        ]
        width = base_width
        for _ in range(n - 1):
            layers += [down(in_channels=width, out_channels=width * 2, norm_layer=norm_layer)]
            width *= 2
        layers += [
            ConvBlock(
                in_channels=width,
                out_channels=1,
                kernel_size=4,
                stride=1,
                padding=0,
                bias=False,
                order="c",
                spectral=spectral,
            )
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Scores images.

        Args:
            x: Images ``(B, in_channels, image_size, image_size)``.

        Returns:
            Logits ``(B,)`` (no sigmoid: use ``BCEWithLogits`` / :class:`GANLoss`).
        """
        if not (x.shape[-2:] == (self.image_size, self.image_size)):
            raise ArgumentError(
                f"expected {self.image_size}x{self.image_size} images, got {tuple(x.shape[-2:])}"
            )
        out: Tensor = self.net(x).flatten()  # (B, 1, 1, 1) -> (B,)
        return out


class PatchGANDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix): one logit per overlapping image patch.

    With kernel 4 and padding 1 a 32x32 input gives a 2x2 map at ``n_layers=3`` (70x70
    receptive field); the input side must be at least ``2 ** (n_layers + 2)``.

    Args:
        in_channels: Input channels (for conditional GANs, image and condition concatenated).
        ndf: Channels of the first layer; doubled per layer up to ``8 * ndf``.
        n_layers: Number of stride-2 convolutions.
        norm_layer: Normalisation type, or ``None``.
        spectral: Spectral normalisation on every convolution.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm_layer: LayerType | None = nn.BatchNorm2d,
        spectral: bool = False,
    ) -> None:
        super().__init__()
        if not (in_channels > 0 and ndf > 0):
            raise ArgumentError(f"channels must be positive, got {in_channels}, {ndf}")
        if n_layers < 1:
            raise ArgumentError(f"n_layers must be >= 1, got {n_layers}")
        self.min_size = 2 ** (n_layers + 2)
        block = functools.partial(
            ConvBlock,
            kernel_size=4,
            padding=1,
            order="cna",
            norm_layer=norm_layer,
            activation=_LeakyReLU02,
            spectral=spectral,
        )
        layers: list[nn.Module] = [
            block(in_channels=in_channels, out_channels=ndf, stride=2, norm_layer=None)
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [block(in_channels=ndf * prev, out_channels=ndf * mult, stride=2)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [block(in_channels=ndf * prev, out_channels=ndf * mult, stride=1)]
        layers += [
            ConvBlock(
                in_channels=ndf * mult,
                out_channels=1,
                kernel_size=4,
                padding=1,
                order="c",
                spectral=spectral,
            )
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Scores every patch.

        Args:
            x: Input ``(B, in_channels, H, W)``, ``H, W >= 2 ** (n_layers + 2)``.

        Returns:
            Logit map ``(B, 1, h, w)``.
        """
        if not (min(x.shape[-2:]) >= self.min_size):
            raise ArgumentError(
                f"input {tuple(x.shape[-2:])} is too small for this PatchGAN; need at least "
                f"{self.min_size}x{self.min_size} (or fewer n_layers)"
            )
        out: Tensor = self.model(x)
        return out


# The guide's three slices of vgg19().features: up to relu2_1, relu4_1 and relu5_1.
_VGG_SLICES: tuple[tuple[int, int], ...] = ((0, 7), (7, 21), (21, 30))
_VGG_KEY = re.compile(r"(?:slice\d+\.)?(\d+)\.(\w+)")


def _vgg19_features_layers() -> nn.Sequential:
    """Torchvision's ``vgg19().features`` with torchvision's random initialisation."""
    # The classifier (~120M parameters) is never used: building on the meta device skips
    # allocating and initialising it, which takes seconds; only the features are materialised.
    with torch.device("meta"):
        import torchvision  # here, not at import: it costs ~1 s and only VGG needs it

        vgg = torchvision.models.vgg19(weights=None)
    features: nn.Sequential = vgg.features.to_empty(device="cpu")
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            # The initialisation torchvision's VGG applies to its convolutions.
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return features


def _to_slice_keys(state_dict: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """Maps a full vgg19, a features-only or a Vgg19Features state dict onto our slice names."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("classifier."):
            continue
        match = _VGG_KEY.fullmatch(key.removeprefix("features."))
        if match is None:
            raise ValueError(
                f"{source}: unexpected key {key!r}; expected a torchvision vgg19 state dict "
                "('features.N.weight', ...) or its features part ('N.weight', ...)"
            )
        index = int(match[1])
        for slice_no, (start, stop) in enumerate(_VGG_SLICES, start=1):
            if start <= index < stop:
                out[f"slice{slice_no}.{index}.{match[2]}"] = value
    return out


class Vgg19Features(nn.Module):
    """The guide's multi-output VGG19: three slices of ``vgg19().features``.

    The slices end at relu2_1, relu4_1 and relu5_1; for a ``(B, 3, H, W)`` input the outputs are
    ``(B, 128, H/2, W/2)``, ``(B, 512, H/8, W/8)`` and ``(B, 512, H/16, W/16)``. Inputs are
    expected ImageNet-normalised (:class:`~torchstyle.nn.losses.PerceptualLoss` does that).

    Weights come from, in order: the ``weights`` file; torchvision's cache file
    ``torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth``; otherwise the weights are random
    and a loud warning says so. Nothing is ever downloaded.

    Args:
        weights: Path to a state dict saved with ``torch.save``: a full torchvision vgg19 state
            dict or only its ``features`` part.
        requires_grad: Train the VGG too; by default all its parameters are frozen.
    """

    def __init__(
        self, *, weights: str | os.PathLike[str] | None = None, requires_grad: bool = False
    ) -> None:
        super().__init__()
        features = _vgg19_features_layers()
        self.slice1 = nn.Sequential()
        self.slice2 = nn.Sequential()
        self.slice3 = nn.Sequential()
        for slice_module, (start, stop) in zip(
            (self.slice1, self.slice2, self.slice3), _VGG_SLICES, strict=True
        ):
            for x in range(start, stop):
                slice_module.add_module(str(x), features[x])

        self.weights_source = self._load_weights(weights)
        if not requires_grad:
            for param in self.parameters():
                param.requires_grad = False

    def _load_weights(self, weights: str | os.PathLike[str] | None) -> str | None:
        if weights is not None:
            path = Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"Vgg19Features: weights file {path} does not exist")
        else:
            path = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_CACHE_FILENAME
            if not path.is_file():
                message = (
                    f"Vgg19Features: NO PRETRAINED WEIGHTS; using RANDOM VGG19 weights, so "
                    f"perceptual features are meaningless. No `weights` path was given and "
                    f"torchvision's cache file {path} does not exist. Pass "
                    f"Vgg19Features(weights='/path/to/{VGG19_CACHE_FILENAME}') or copy that file "
                    f"to {path} (set TORCH_HOME to use another cache folder)."
                )
                warnings.warn(message, UserWarning, stacklevel=3)
                logger.warning(message)
                return None
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"Vgg19Features: {path} holds a {type(state_dict)}, not a state dict")
        self.load_state_dict(_to_slice_keys(state_dict, str(path)), strict=True)
        logger.info("Vgg19Features: loaded weights from %s", path)
        return str(path)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Returns the three slice outputs.

        Args:
            x: ImageNet-normalised images ``(B, 3, H, W)``.

        Returns:
            ``[h_relu2_1, h_relu4_1, h_relu5_1]``.
        """
        h_relu1 = self.slice1(x)
        h_relu2 = self.slice2(h_relu1)
        h_relu3 = self.slice3(h_relu2)
        out = [h_relu1, h_relu2, h_relu3]
        return out


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with BatchNorm and a (projected) shortcut."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            ConvBlock(
                in_channels=in_channels, out_channels=out_channels, stride=stride, order="cna"
            ),
            ConvBlock(
                in_channels=out_channels, out_channels=out_channels, order="cn", activation=None
            ),
        )
        # A 1x1 projection only where the shapes change, as in He et al. (option B).
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvBlock(
                in_channels=in_channels,
                out_channels=out_channels,
                kernel_size=1,
                stride=stride,
                order="cn",
                activation=None,
            )
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.relu(self.residual(x) + self.shortcut(x))
        return out


class ResNetClassifier(nn.Module):
    """A small ResNet for 8 to 64 px images: stem, stages of basic blocks, average pool, linear.

    The width stays the same in every stage (each later stage halves the resolution): small
    images leave little spatial extent to trade for channels, and doubling would more than double
    the parameter count (about 75k instead of 170k at ``width=32`` on 8x8 digits).

    Args:
        in_channels: Image channels.
        num_classes: Number of classes.
        image_size: Input size (8 to 64); stages are limited so the last map is at least 2x2.
        width: Channels of every stage.
        num_blocks: Basic blocks per stage; every stage after the first starts with stride 2.
        dropout: Dropout before the linear layer.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        width: int = 32,
        num_blocks: Sequence[int] = (2, 2),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not (8 <= image_size <= 64):
            raise ArgumentError(f"image_size must be in [8, 64], got {image_size}")
        if not (in_channels > 0 and width > 0):
            raise ArgumentError(f"channels must be positive, got {in_channels}, {width}")
        if num_classes < 2:
            raise ArgumentError(f"num_classes must be >= 2, got {num_classes}")
        if not (len(num_blocks) >= 1 and all(n >= 1 for n in num_blocks)):
            raise ArgumentError(
                f"num_blocks needs at least one stage of at least one block, got {num_blocks}"
            )
        if not (image_size // 2 ** (len(num_blocks) - 1) >= 2):
            raise ArgumentError(
                f"{len(num_blocks)} stages shrink a {image_size}px image below 2x2; use fewer stages"
            )
        if not (0.0 <= dropout < 1.0):
            raise ArgumentError(f"dropout must be in [0, 1), got {dropout}")
        self.image_size = image_size
        layers: list[nn.Module] = [
            ConvBlock(in_channels=in_channels, out_channels=width, order="cna")
        ]
        for stage, n in enumerate(num_blocks):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers += [_BasicBlock(in_channels=width, out_channels=width, stride=stride)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(width, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Classifies images.

        Args:
            x: Images ``(B, in_channels, H, W)``.

        Returns:
            Logits ``(B, num_classes)``.
        """
        out: Tensor = self.head(self.features(x))
        return out
