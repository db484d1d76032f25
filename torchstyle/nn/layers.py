"""Reusable layers: the guide's small building blocks.

The guide builds every block the same way: a list of layers, then ``nn.Sequential(*block)``.
Blocks take layer *types* (``norm_layer=nn.BatchNorm2d``), never instances, so that every block
owns fresh modules and a caller can swap a normalisation without touching the block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from torchstyle.nn.errors import ArgumentError, require

#: What ``nn.Conv2d`` pads with.
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]

__all__ = [
    "AdaptiveInstanceNorm",
    "ConvBlock",
    "LayerType",
    "ResnetBlock",
    "SNConv2d",
    "SNLinear",
    "SelfAttention",
    "spectral_norm",
]

#: A layer type such as ``nn.BatchNorm2d`` or anything called the same way, e.g.
#: ``functools.partial(nn.LeakyReLU, 0.2)`` for an activation that needs an argument.
LayerType = type[nn.Module] | Callable[..., nn.Module]

# Single letters and words both name the three parts of a ConvBlock.
_ORDER_ALIASES: dict[str, str] = {
    "c": "conv",
    "conv": "conv",
    "n": "norm",
    "norm": "norm",
    "a": "act",
    "act": "act",
    "activation": "act",
}

_PADDINGS: dict[str, type[nn.Module] | None] = {
    "reflect": nn.ReflectionPad2d,
    "replicate": nn.ReplicationPad2d,
    "zero": None,  # zero padding is done by the convolution itself
}


def _parse_order(order: str | Sequence[str]) -> tuple[str, ...]:
    """Turns ``"can"`` or ``("conv", "act", "norm")`` into canonical part names."""
    parts = tuple(order)  # a string splits into its letters
    unknown = [p for p in parts if p not in _ORDER_ALIASES]
    if unknown:
        raise ArgumentError(
            f"unknown ConvBlock order part(s) {unknown}; use letters c/n/a or conv/norm/act"
        )
    canonical = tuple(_ORDER_ALIASES[p] for p in parts)
    if not (canonical.count("conv") == 1):
        raise ArgumentError(f"order {order!r} must contain exactly one conv")
    if not (len(set(canonical)) == len(canonical)):
        raise ArgumentError(f"order {order!r} repeats a part")
    return canonical


def _conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int,
    padding: int,
    padding_mode: PaddingMode,
    bias: bool,
    transpose: bool,
    output_padding: int,
    spectral: bool,
) -> nn.Module:
    """The convolution of a :class:`ConvBlock` (transposed, spectrally normalised if asked)."""
    conv: nn.Module
    if transpose:
        conv = nn.ConvTranspose2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            bias=bias,
        )
    else:
        conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            padding_mode=padding_mode,
            bias=bias,
        )
    return spectral_norm(conv) if spectral else conv


class ConvBlock(nn.Module):
    """Convolution, activation and normalisation in a configurable order.

    The default order is the guide's (conv -> ReLU -> BatchNorm). The order string uses ``c``
    (conv), ``n`` (norm) and ``a`` (activation), e.g. ``"cna"`` for the pix2pix/CycleGAN order or
    ``"nac"`` for pre-activation blocks; a tuple of words (``("conv", "norm", "act")``) also works.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Convolution kernel size.
        stride: Convolution stride (upsampling factor when ``transpose``).
        padding: Convolution padding; ``None`` means ``(kernel_size - 1) // 2``, which keeps the
            size at stride 1 for odd kernels.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``; transposed
            convolutions support only ``"zeros"``.
        bias: Whether the convolution has a bias; ``None`` drops it exactly when a norm layer
            directly follows the convolution (the norm subtracts the mean, so a bias is wasted).
        order: Order of the parts; parts whose layer is ``None`` are skipped.
        norm_layer: Normalisation type, called as ``norm_layer(num_channels)``, or ``None``.
        activation: Activation type, called without arguments, or ``None``.
        transpose: Use ``nn.ConvTranspose2d`` (upsampling blocks).
        output_padding: Extra output size of a transposed convolution (e.g. 1 for kernel 3,
            stride 2, padding 1 to double the size exactly).
        spectral: Wrap the convolution in spectral normalisation (discriminators).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        padding_mode: PaddingMode = "zeros",
        bias: bool | None = None,
        order: str | Sequence[str] = "can",
        norm_layer: LayerType | None = nn.BatchNorm2d,
        activation: LayerType | None = nn.ReLU,
        transpose: bool = False,
        output_padding: int = 0,
        spectral: bool = False,
    ) -> None:
        super().__init__()
        require(
            in_channels > 0 and out_channels > 0,
            f"channels must be positive, got {in_channels} -> {out_channels}",
        )
        require(
            kernel_size > 0 and stride > 0,
            f"kernel_size and stride must be positive, got {kernel_size}, {stride}",
        )
        require(
            not transpose or padding_mode == "zeros",
            f"ConvTranspose2d supports only padding_mode='zeros', got {padding_mode!r}",
        )
        require(transpose or output_padding == 0, "output_padding only applies when transpose=True")
        parts = _parse_order(order)
        if padding is None:
            padding = (kernel_size - 1) // 2
        conv_at = parts.index("conv")
        if bias is None:
            next_part = parts[conv_at + 1] if conv_at + 1 < len(parts) else None
            bias = not (next_part == "norm" and norm_layer is not None)
        conv = _conv(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            padding_mode=padding_mode,
            bias=bias,
            transpose=transpose,
            output_padding=output_padding,
            spectral=spectral,
        )
        block: list[nn.Module] = []
        for i, part in enumerate(parts):
            if part == "conv":
                block += [conv]
            elif part == "norm" and norm_layer is not None:
                # A norm before the conv sees the input channels, after it the output channels.
                block += [norm_layer(in_channels if i < conv_at else out_channels)]
            elif part == "act" and activation is not None:
                block += [activation()]
        self.block = nn.Sequential(*block)

    def forward(self, x: Tensor) -> Tensor:
        """Applies the block.

        Args:
            x: Input of shape ``(B, in_channels, H, W)``.

        Returns:
            Output of shape ``(B, out_channels, H', W')``.
        """
        out: Tensor = self.block(x)
        return out


class ResnetBlock(nn.Module):
    """The guide's residual block (CycleGAN/pix2pixHD): ``x + conv_block(x)``.

    Args:
        dim: Channels in and out.
        padding_type: ``"reflect"``, ``"replicate"`` or ``"zero"``.
        norm_layer: Normalisation type, called as ``norm_layer(dim)``, or ``None``.
        use_dropout: Add ``Dropout(0.5)`` between the two convolutions.
        use_bias: Whether the convolutions have a bias; ``None`` adds one exactly when the norm
            layer has no learnable shift of its own (e.g. ``nn.InstanceNorm2d`` or no norm).
    """

    def __init__(
        self,
        *,
        dim: int,
        padding_type: str = "reflect",
        norm_layer: LayerType | None = nn.BatchNorm2d,
        use_dropout: bool = False,
        use_bias: bool | None = None,
    ) -> None:
        super().__init__()
        if dim <= 0:
            raise ArgumentError(f"dim must be positive, got {dim}")
        if padding_type not in _PADDINGS:
            raise ArgumentError(
                f"padding_type must be one of {sorted(_PADDINGS)}, got {padding_type!r}"
            )
        if use_bias is None:
            use_bias = norm_layer is None or getattr(norm_layer(dim), "bias", None) is None
        self.conv_block = self.build_conv_block(
            dim, padding_type, norm_layer, use_dropout, use_bias
        )

    def build_conv_block(
        self,
        dim: int,
        padding_type: str,
        norm_layer: LayerType | None,
        use_dropout: bool,
        use_bias: bool,
    ) -> nn.Sequential:
        """Builds conv -> norm -> ReLU -> (dropout) -> conv -> norm.

        Args:
            dim: Channels in and out.
            padding_type: ``"reflect"``, ``"replicate"`` or ``"zero"``.
            norm_layer: Normalisation type or ``None``.
            use_dropout: Add ``Dropout(0.5)`` after the first ReLU.
            use_bias: Whether the convolutions have a bias.

        Returns:
            The residual branch (without the skip connection).
        """

        def conv() -> list[nn.Module]:
            pad_type = _PADDINGS[padding_type]
            pad = [pad_type(1)] if pad_type is not None else []
            conv_padding = 0 if pad_type is not None else 1
            return [*pad, nn.Conv2d(dim, dim, kernel_size=3, padding=conv_padding, bias=use_bias)]

        def norm() -> list[nn.Module]:
            return [norm_layer(dim)] if norm_layer is not None else []

        conv_block: list[nn.Module] = []
        conv_block += [*conv(), *norm(), nn.ReLU(True)]
        if use_dropout:
            conv_block += [nn.Dropout(0.5)]
        conv_block += [*conv(), *norm()]
        return nn.Sequential(*conv_block)

    def forward(self, x: Tensor) -> Tensor:
        """Applies the block.

        Args:
            x: Input of shape ``(B, dim, H, W)``.

        Returns:
            ``x + conv_block(x)``, same shape as ``x``.
        """
        out: Tensor = x + self.conv_block(x)
        return out


class SelfAttention(nn.Module):
    """Self-attention over spatial positions (SAGAN, Zhang et al. 2019).

    ``out = gamma * attention(x) + x`` with ``gamma`` initialised to 0, so a freshly built layer
    is the identity and the network learns how much non-local evidence to mix in.

    Args:
        in_channels: Channels in and out.
        reduction: Query/key channels are ``in_channels // reduction`` (at least 1); SAGAN uses 8.
        spectral: Wrap the 1x1 convolutions in spectral normalisation, as SAGAN does.
    """

    def __init__(self, *, in_channels: int, reduction: int = 8, spectral: bool = False) -> None:
        super().__init__()
        if in_channels <= 0:
            raise ArgumentError(f"in_channels must be positive, got {in_channels}")
        if reduction <= 0:
            raise ArgumentError(f"reduction must be positive, got {reduction}")
        inner = max(1, in_channels // reduction)
        wrap = spectral_norm if spectral else (lambda m: m)
        self.query = wrap(nn.Conv2d(in_channels, inner, kernel_size=1))
        self.key = wrap(nn.Conv2d(in_channels, inner, kernel_size=1))
        self.value = wrap(nn.Conv2d(in_channels, in_channels, kernel_size=1))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        """Applies self-attention.

        Args:
            x: Input of shape ``(B, C, H, W)``.

        Returns:
            Output of the same shape.
        """
        b, c, h, w = x.shape
        query = self.query(x).flatten(2)  # (B, C', N) with N = H * W
        key = self.key(x).flatten(2)  # (B, C', N)
        value = self.value(x).flatten(2)  # (B, C, N)
        # Row i says how much position i draws from every position j.
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # (B, N, N)
        out: Tensor = value @ attention.transpose(1, 2)  # (B, C, N)
        out = out.view(b, c, h, w)  # (B, C, H, W)
        return self.gamma * out + x


class AdaptiveInstanceNorm(nn.Module):
    """Adaptive instance normalisation (AdaIN, Huang & Belongie 2017).

    Normalises each channel of ``content`` over its spatial positions, then gives it the
    per-channel mean and standard deviation of ``style``. Has no parameters.

    Args:
        eps: Added to the variances before the square root, for stability on flat channels.
    """

    def __init__(self, *, eps: float = 1e-5) -> None:
        super().__init__()
        if not eps >= 0:  # written so that NaN fails too
            raise ArgumentError(f"eps must be non-negative, got {eps}")
        self.eps = eps

    def _mean_std(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Biased variance, as instance norm uses: the statistics describe this image, not a sample.
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)  # (B, C, 1, 1)
        return mean, torch.sqrt(var + self.eps)

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        """Re-styles ``content`` with the statistics of ``style``.

        Args:
            content: Content features ``(B, C, H, W)``.
            style: Style features ``(B, C, H', W')``; the spatial size may differ.

        Returns:
            Tensor shaped like ``content``.
        """
        if not (content.dim() == 4 and style.dim() == 4):
            raise ArgumentError(
                f"AdaIN expects (B, C, H, W) inputs, got {tuple(content.shape)}, {tuple(style.shape)}"
            )
        if not (content.shape[:2] == style.shape[:2]):
            raise ArgumentError(
                f"content and style must agree in batch and channels, got "
                f"{tuple(content.shape[:2])} vs {tuple(style.shape[:2])}"
            )
        content_mean, content_std = self._mean_std(content)
        style_mean, style_std = self._mean_std(style)
        return (content - content_mean) / content_std * style_std + style_mean


class SNConv2d(nn.Conv2d):
    """``nn.Conv2d`` with spectral normalisation on its weight (Miyato et al. 2018).

    Takes exactly ``nn.Conv2d``'s arguments, so it is a drop-in replacement; the normalisation
    is torch's own :func:`torch.nn.utils.parametrizations.spectral_norm`.

    Args:
        *args: Positional arguments of ``nn.Conv2d``.
        n_power_iterations: Power iterations per training forward pass.
        **kwargs: Keyword arguments of ``nn.Conv2d``.
    """

    def __init__(self, *args: Any, n_power_iterations: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spectral_norm(self, n_power_iterations=n_power_iterations)


class SNLinear(nn.Linear):
    """``nn.Linear`` with spectral normalisation on its weight.

    Takes exactly ``nn.Linear``'s arguments, so it is a drop-in replacement.

    Args:
        *args: Positional arguments of ``nn.Linear``.
        n_power_iterations: Power iterations per training forward pass.
        **kwargs: Keyword arguments of ``nn.Linear``.
    """

    def __init__(self, *args: Any, n_power_iterations: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spectral_norm(self, n_power_iterations=n_power_iterations)
